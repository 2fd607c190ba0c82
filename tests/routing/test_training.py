"""Gate training on cached tensors: loss terms, learning to route, warm start, caching."""

import math

import torch

from devtools.tiny import synthetic_domain
from routing.config import ClassifierRouting, GateConfig, LossWeights, TrainConfig
from routing.gate import Gate, GateOutput
from routing.gate_training import warm_start
from routing.kinds.classification.composing import cached_split, compose, evaluate_cached
from routing.kinds.classification.experts import load_expert
from routing.losses import gate_losses


def test_every_loss_term_is_returned_by_name_and_summed_with_its_sign():
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    probs = logits.softmax(-1)
    out = GateOutput(logits, probs, probs)
    expert_probs = torch.rand(6, 3, 4).softmax(-1)
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    domain_experts = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    w = LossWeights(routing=0.3, balance=0.2, entropy_example=0.1, entropy_batch=0.4, z=0.05)
    losses = gate_losses(out, expert_probs, targets, domain_experts, w)
    assert set(losses) == {
        "total",
        "task",
        "routing",
        "balance",
        "entropy_example",
        "entropy_batch",
        "z",
    }
    expected = (
        losses["task"]
        + 0.3 * losses["routing"]
        + 0.2 * losses["balance"]
        + 0.1 * losses["entropy_example"]
        - 0.4 * losses["entropy_batch"]
        + 0.05 * losses["z"]
    )
    assert torch.allclose(losses["total"], expected)
    mix = torch.einsum("bn,bnu->bu", probs, expert_probs)
    assert torch.allclose(losses["task"], -mix[range(6), targets].log().mean(), atol=1e-6)


def test_the_entropy_terms_have_the_documented_signs():
    """Confident, balanced routing scores lower entropy_example and higher entropy_batch."""
    confident = torch.tensor([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]])
    collapsed = torch.tensor([[10.0, 0, 0], [10.0, 0, 0], [10.0, 0, 0]])
    vague = torch.zeros(3, 3)
    ep = torch.full((3, 3, 2), 0.5)
    t = torch.zeros(3, dtype=torch.long)
    de = torch.eye(3).bool()

    def terms(logits):
        p = logits.softmax(-1)
        return gate_losses(GateOutput(logits, p, p), ep, t, de, LossWeights())

    assert terms(confident)["entropy_example"] < terms(vague)["entropy_example"]
    assert terms(confident)["entropy_batch"] > terms(collapsed)["entropy_batch"]
    assert terms(confident)["balance"] < terms(collapsed)["balance"]
    assert math.isclose(float(terms(vague)["entropy_example"]), 1.0, rel_tol=1e-5)


def test_the_gate_learns_to_route_each_domain_to_its_expert(trained, tiny_encoder, cache):
    data, experts = trained
    composed = compose(
        tiny_encoder,
        experts,
        list(data),
        data,
        cache=cache,
        gate_config=GateConfig(top_k=1, hidden=16),
        train_config=TrainConfig(epochs=30),
    )
    comp, report = composed.model, composed.report
    matrix = torch.tensor(report["routing_matrix"])
    assert (matrix.diagonal() > 0.9).all(), matrix
    assert report["overall"]["accuracy"] > 0.85
    assert set(report["domains"]) == set(data)
    # the matrix's rows are named in order, whatever a JSON store does to key order
    assert report["domain_order"] == list(data) and len(report["domain_order"]) == len(matrix)
    assert report["utilisation"]["under_1pct"] == 0
    assert set(comp.info["final_losses"]) >= {"task", "routing", "balance", "entropy_batch"}


def test_a_warm_started_gate_keeps_the_old_experts_routing(trained, tiny_encoder, cache):
    data, experts = trained
    old_data = {k: data[k] for k in ("weather", "food")}
    # the gate reads the mean-pooled features only
    features_only = ClassifierRouting(gate_features="mean", read_experts=False)
    composed = compose(
        tiny_encoder,
        experts[:2],
        ["weather", "food"],
        old_data,
        cache=cache,
        gate_config=GateConfig(top_k=1, hidden=64),
        routing=features_only,
    )
    old, _ = composed.model, composed.report
    split = cached_split(experts, list(data), data, "eval", tiny_encoder, cache)
    new_feats = [split.features[split.domain_idx == 2]]
    warmed = warm_start(old.gate, new_feats, split.features[split.domain_idx < 2])
    old_route = old.gate(split.features).probs.argmax(-1)
    new_route = warmed(split.features).probs.argmax(-1)
    old_domains = split.domain_idx < 2
    kept = (new_route[old_domains] == old_route[old_domains]).float().mean()
    assert kept > 0.95
    assert (new_route[~old_domains] == 2).float().mean() > 0.8
    # And after retraining from the warm start, the old domains still go home.
    composed = compose(
        tiny_encoder, experts, list(data), data, cache=cache, previous=old, routing=features_only
    )
    new, report = composed.model, composed.report
    assert new.info["warm_start"] is True
    matrix = torch.tensor(report["routing_matrix"])
    assert matrix[0, 0] > 0.9 and matrix[1, 1] > 0.9


def test_entropy_regularisation_raises_load_balance(trained, tiny_encoder, cache):
    data, experts = trained
    # Unbalanced router data: weather dominates; the batch-entropy term pushes back
    # (drawn as they come, not in balance).
    skewed = {k: v.limited(None) for k, v in data.items()}
    skewed["food"].router = skewed["food"].router.limited(10)
    skewed["sport"].router = skewed["sport"].router.limited(10)
    names = list(data)
    no_reg = LossWeights(routing=0.0, balance=0.0, entropy_example=0.0, entropy_batch=0.0, z=0.0)
    strong = LossWeights(routing=0.0, balance=0.0, entropy_example=0.0, entropy_batch=2.0, z=0.0)
    entropies = []
    for weights in (no_reg, strong):
        composed = compose(
            tiny_encoder,
            experts,
            names,
            skewed,
            cache=cache,
            gate_config=GateConfig(top_k=3, hidden=16),
            train_config=TrainConfig(epochs=30, loss=weights),
            routing=ClassifierRouting(balance_domains=False),
        )
        comp, _ = composed.model, composed.report
        split = cached_split(
            experts, names, skewed, "router", tiny_encoder, cache, gate_features=comp.gate_features
        )
        entropies.append(evaluate_cached(comp, split)["utilisation"]["entropy"])
    assert entropies[1] > entropies[0] + 0.05, entropies


def test_features_and_expert_outputs_are_computed_once(trained, tiny_encoder, cache):
    data, experts = trained
    compose(tiny_encoder, experts, list(data), data, cache=cache)
    misses = cache.misses
    hits = cache.hits
    compose(tiny_encoder, experts, list(data), data, cache=cache)
    assert cache.misses == misses
    assert cache.hits > hits


def test_gate_expansion_copies_old_rows():
    gate = Gate(8, 2, GateConfig(hidden=4))
    bigger = gate.expanded(torch.ones(1, 4), torch.zeros(1))
    assert bigger.n_experts == 3
    assert torch.equal(bigger.out.weight[:2], gate.out.weight)
    assert torch.equal(bigger.hidden.weight, gate.hidden.weight)
    assert torch.equal(bigger.out.weight[2], torch.ones(4))


def test_lora_training_starts_from_clean_base_weights(tmp_path, tiny_encoder):
    import warnings

    from devtools.experts import make_lora_file
    from routing.kinds.classification.training import train_lora

    attached = load_expert(make_lora_file(tmp_path / "l.safetensors", tiny_encoder, ["a", "b"]))
    tiny_encoder.add_lora("other", attached.header.lora, attached.lora_tensors)
    data = synthetic_domain("weather", 64)
    targets = torch.tensor([data.labels.index(x) for x in data.train.labels])
    with warnings.catch_warnings():
        # PEFT warns when it wraps an already adapted model
        warnings.filterwarnings("error", message=".*PEFT for a second time")
        warnings.filterwarnings("error", message=".*multiple adapters")
        lora, _ = train_lora(tiny_encoder, data.train.texts, targets, 2, r=2, epochs=1)
    assert len(lora) == 2 * 2 * tiny_encoder.spec.num_layers
    assert all(k.startswith("encoder.layer.") for k in lora)


def test_domain_balanced_sampling_gives_each_domain_an_equal_share():
    from routing.gate_training import _epoch_batches

    domain_idx = torch.tensor([0] * 900 + [1] * 100)
    g = torch.Generator().manual_seed(0)
    drawn = torch.cat(list(_epoch_batches(1000, TrainConfig(balance_domains=True), g, domain_idx)))
    share = (domain_idx[drawn] == 1).float().mean()
    assert len(drawn) == 1000 and 0.45 < share < 0.55
    plain = torch.cat(list(_epoch_batches(1000, TrainConfig(), g, domain_idx)))
    assert sorted(plain.tolist()) == list(range(1000))


def test_the_balance_term_counts_what_the_gate_dispatches():
    """Top-1 it is Switch's term; top-k it counts each input's k experts, as Mixtral's
    load-balancing loss does (transformers' own function gives the same number)."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    from routing.losses import load_balance

    torch.manual_seed(0)
    logits = torch.randn(64, 5)
    probs = logits.softmax(-1)
    switch = 5 * (torch.nn.functional.one_hot(probs.argmax(-1), 5).float().mean(0) * probs.mean(0))
    assert torch.allclose(load_balance(probs, 1), switch.sum())
    for k in (1, 2, 3):
        mixtral = load_balancing_loss_func((logits,), num_experts=5, top_k=k)
        assert torch.allclose(load_balance(probs, k), mixtral, atol=1e-6), k
    # perfectly balanced top-2 routing of 4 experts scores k = 2; a dense gate is constant
    balanced = torch.tensor([[0.4, 0.4, 0.1, 0.1], [0.1, 0.1, 0.4, 0.4]]).repeat(8, 1)
    assert torch.isclose(load_balance(balanced, 2), torch.tensor(2.0))
    dense = logits.softmax(-1).requires_grad_()
    load_balance(dense, 5).backward()
    assert torch.allclose(dense.grad, torch.full_like(dense.grad, 5 / 64))  # N * mean: flat
