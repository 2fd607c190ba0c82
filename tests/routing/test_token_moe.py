"""Anchored, per-token language-model mixtures on a tiny random Llama: the anchor merged
into the base, experts on the MLP, per-token routing as a Mixtral layer computes it, router
rows from the domains' embeddings, tuning, coordinated training, the folder round trip."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import json

import pytest
import torch

from devtools.tiny_lm import lm_texts
from routing.cache import TensorCache
from routing.config import LMRouting
from routing.data import Split, split_unsplit
from routing.kinds.causal_lm.base import CausalBase
from routing.kinds.causal_lm.experts import load_lm_expert
from routing.kinds.causal_lm.token_model import SHARED, TokenMoECausalLM, tune_routers
from routing.kinds.causal_lm.token_moe import ExpertDeltas, TokenMoEMLP, deltas_of
from routing.kinds.causal_lm.token_routing import domain_row
from routing.kinds.causal_lm.training import train_lm_expert_file
from routing.safetensors_header import ContractError
from tests.routing.lm_fixtures import (  # noqa: F401 (fixtures)
    MAX_TOKENS,
    PREFIX,
    PROMPTS,
    lm_domains,
    lm_expert_files,
    tiny_lm,
    tiny_lm_folder,
)

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def anchored(tiny_lm_folder, lm_domains, tmp_path_factory):
    """An anchor trained on mixed public text, and two experts trained on the base with it
    merged: one alone, one coordinated with the shared expert."""
    folder = tmp_path_factory.mktemp("anchored")
    cache = TensorCache(folder / "cache")
    plain = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS)
    public = split_unsplit(
        "public", Split(lm_texts("weather", 80, seed=5) + lm_texts("food", 80, seed=5))
    )
    anchor = folder / "anchor.safetensors"
    train_lm_expert_file(plain, public, anchor, cache=cache, prefix_tokens=PREFIX, r=4,
                         target_modules=ALL_LINEAR, epochs=2, batch_size=16, lr=1e-2,
                         role="anchor", evaluate=False)  # fmt: skip
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    files = {}
    for name, coordinated in (("weather", False), ("food", True)):
        files[name] = folder / f"{name}.safetensors"
        train_lm_expert_file(base, lm_domains[name], files[name], cache=cache,
                             prefix_tokens=PREFIX, r=4, epochs=3, batch_size=16, lr=1e-2,
                             coordinated=coordinated, evaluate=False)  # fmt: skip
    return anchor, files, public


def merged_logits(base, tensors_scales, texts):
    """Logits of a fresh copy of `base` with each (canonical LoRA tensors, scale) merged into
    its weights: the standard checkpoint a one-expert composition must equal."""
    model = base.fresh_model()
    model = type(model)(model.config)  # its own weights, to merge into
    model.load_state_dict({k: v.clone() for k, v in base.weights.items()}, strict=False)
    with torch.no_grad():
        for tensors, scale in tensors_scales:
            for key in tensors:
                if ".lora_A." in key:
                    module = key.rsplit(".lora_", 1)[0]
                    a, b = tensors[key], tensors[key.replace(".lora_A.", ".lora_B.")]
                    model.get_submodule(module).weight += scale * (b @ a)
    batch = base.tokenize(texts)
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_the_anchor_is_merged_for_good_and_experts_name_it(anchored, tiny_lm_folder):
    anchor, files, _ = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    plain = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS)
    assert base.spec.anchor == base.anchor.sha256 and plain.spec.anchor == ""
    assert base.weights_fingerprint == plain.weights_fingerprint  # what experts name
    assert base.fingerprint != plain.fingerprint  # what caches are keyed by
    with torch.no_grad():
        ours = base.model(**base.tokenize(PROMPTS)).logits
    expected = merged_logits(plain, [(base.anchor.lora_tensors, base.anchor.scale)], PROMPTS)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    expert = load_lm_expert(files["weather"], base=base.spec)
    assert expert.header.anchor == base.spec.anchor
    assert {m.rsplit(".", 1)[1] for m in expert.modules()} == {"gate_proj", "up_proj", "down_proj"}
    with pytest.raises(ContractError) as refused:
        load_lm_expert(files["weather"], base=plain.spec)
    assert refused.value.code == "wrong_anchor" and "has no anchor" in str(refused.value)


def test_the_anchor_carries_the_shared_experts_router_row(anchored, tiny_lm_folder, lm_domains):
    """Its public texts' statistics at every MLP input, with the anchor merged: the shared
    expert's row in every per-token composition and in coordinated training."""
    from routing.kinds.causal_lm.token_composing import token_routers
    from routing.kinds.causal_lm.token_routing import mlp_input_stats, row_of

    anchor, files, public = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    stats = base.anchor.router_stats  # (2, L, D)
    torch.testing.assert_close(stats, mlp_input_stats(base, public.router.texts[:64]))
    weather = load_lm_expert(files["weather"], base=base.spec)
    rows, _ = token_routers(
        base,
        [weather],
        ["weather"],
        lm_domains,
        cache=None,
        routing=LMRouting(),
        shared_texts=lm_domains["food"].router.texts,
    )
    torch.testing.assert_close(rows[:, 0], row_of(stats, LMRouting().token_temperature))


def test_a_one_expert_token_composition_equals_the_base_with_anchor_and_expert_merged(
    anchored, tiny_lm_folder
):
    anchor, files, _ = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    plain = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS)
    expert = load_lm_expert(files["food"], base=base.spec)
    routers = torch.zeros(len(base.model.model.layers), 1, base.hidden_size)
    one = TokenMoECausalLM(base, [expert], ["food"], routers=routers, top_k=1, shared=False)
    with torch.no_grad():
        ours = one.model(**base.tokenize(PROMPTS)).logits
    expected = merged_logits(
        plain, [(base.anchor.lora_tensors, base.anchor.scale), (expert.lora_tensors, expert.scale)],
        PROMPTS,
    )  # fmt: skip
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def _merged_mlp(layer_mlp, deltas: ExpertDeltas):
    """An explicit MLP with an expert's deltas merged into its weights."""
    out = {}
    for name in ("gate_proj", "up_proj", "down_proj"):
        w = getattr(layer_mlp, name).weight.detach().clone()
        if name in deltas.pairs:
            a, b = deltas.pairs[name]
            w += deltas.scale * (b @ a)
        out[name] = w
    return lambda x: (
        (layer_mlp.act_fn(x @ out["gate_proj"].T) * (x @ out["up_proj"].T)) @ (out["down_proj"].T)
    )


@pytest.mark.parametrize("gather", [0, 10**6], ids=["expert by expert", "gathered per token"])
def test_top_k_equal_to_every_expert_with_a_uniform_router_is_their_mean_and_a_mixtral_block(
    anchored, tiny_lm_folder, gather, monkeypatch
):
    """Both ways the block computes (a loop over the chosen experts for many tokens, their
    deltas gathered per token for a few) are the mean of the merged MLPs and Mixtral's."""
    from transformers import MixtralConfig

    monkeypatch.setattr("routing.kinds.causal_lm.token_moe.GATHER_TOKENS", gather)
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    anchor, files, _ = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    experts = [load_lm_expert(files[d], base=base.spec) for d in ("weather", "food")]
    layer = base.fresh_model().model.layers[1].mlp
    deltas = [ExpertDeltas()] + [deltas_of(e.lora_tensors, e.scale)[1] for e in experts]
    dim = base.hidden_size
    x = torch.randn(2, 5, dim)
    uniform = TokenMoEMLP(layer, torch.zeros(3, dim), deltas, top_k=3)
    explicit = sum(_merged_mlp(layer, d)(x) for d in deltas) / 3
    with torch.no_grad():
        torch.testing.assert_close(uniform(x), explicit, atol=1e-5, rtol=0)
    # any router, top-2: exactly transformers' Mixtral block with the merged weights
    router = torch.randn(3, dim)
    ours = TokenMoEMLP(layer, router, deltas, top_k=2)
    config = MixtralConfig(hidden_size=dim, intermediate_size=layer.gate_proj.out_features,
                           num_local_experts=3, num_experts_per_tok=2,
                           hidden_act=base.model.config.hidden_act)  # fmt: skip
    block = MixtralSparseMoeBlock(config).eval()
    with torch.no_grad():
        block.gate.weight.copy_(router)
        for e, d in enumerate(deltas):
            merged = _merged_weights(layer, d)
            block.experts.gate_up_proj[e] = torch.cat([merged["gate_proj"], merged["up_proj"]])
            block.experts.down_proj[e] = merged["down_proj"]
        torch.testing.assert_close(ours(x), block(x), atol=1e-5, rtol=0)


def _merged_weights(layer_mlp, deltas):
    out = {}
    for name in ("gate_proj", "up_proj", "down_proj"):
        w = getattr(layer_mlp, name).weight.detach().clone()
        if name in deltas.pairs:
            a, b = deltas.pairs[name]
            w += deltas.scale * (b @ a)
        out[name] = w
    return out


def test_router_rows_are_deterministic_and_a_new_expert_leaves_the_others(
    anchored, tiny_lm_folder, lm_domains, tmp_path
):
    from routing.kinds.causal_lm.token_composing import token_routers

    anchor, files, public = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    routing = LMRouting(prefix_tokens=PREFIX, granularity="token")
    weather = load_lm_expert(files["weather"], base=base.spec)
    food = load_lm_expert(files["food"], base=base.spec)
    one, _ = token_routers(base, [weather], ["weather"], lm_domains, cache=None,
                           routing=routing, shared_texts=public.router.texts)  # fmt: skip
    again = domain_row(base, lm_domains["weather"].router.texts, temperature=0.005)
    torch.testing.assert_close(one[:, 1], again)
    previous = TokenMoECausalLM(base, [weather], ["weather"], routers=one)
    two, info = token_routers(
        base,
        [weather, food],
        ["weather", "food"],
        lm_domains,
        cache=TensorCache(tmp_path),
        routing=routing,
        previous=previous,
    )
    assert torch.equal(two[:, :2], one) and info == {"rows_kept": 1, "rows_new": 1}


def test_a_token_mixture_refuses_an_attention_expert_and_says_how_to_retrain(
    tiny_lm, lm_expert_files, tmp_path
):
    from devtools.tiny_lm import save_lm_peft_adapter

    folder = save_lm_peft_adapter(tmp_path / "qv", tiny_lm.location)  # q_proj and v_proj
    expert = load_lm_expert(folder / "adapter_model.safetensors", base=tiny_lm.spec)
    routers = torch.zeros(len(tiny_lm.model.model.layers), 2, tiny_lm.hidden_size)
    with pytest.raises(ContractError) as refused:
        TokenMoECausalLM(tiny_lm, [expert], ["weather"], routers=routers)
    assert refused.value.code == "attention_modules_in_token_mixture"
    assert "q_proj" in str(refused.value) and "gate_proj,up_proj,down_proj" in str(refused.value)


def test_a_token_composition_scores_tunes_saves_loads_and_generates(
    anchored, tiny_lm_folder, lm_domains, tmp_path
):
    from routing.kinds.causal_lm.token_composing import compose_tokens

    anchor, files, public = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    experts = [load_lm_expert(files[d], base=base.spec) for d in ("weather", "food")]
    routing = LMRouting(prefix_tokens=PREFIX, granularity="token", token_top_k=2)
    cache = TensorCache(tmp_path / "cache")
    composed = compose_tokens(base, experts, ["weather", "food"], lm_domains, cache=cache,
                              routing=routing, shared_texts=public.router.texts)  # fmt: skip
    report = composed.report
    assert report["overall"]["perplexity"] < report["overall"]["base_perplexity"], report
    matrix = report["routing_matrix"]  # rows: weather, food; columns: shared, weather, food
    assert matrix[0][1] == max(matrix[0]) and matrix[1][2] == max(matrix[1]), matrix
    assert len(report["layer_routing"]) == len(base.model.model.layers)
    assert report["overall"]["routing_accuracy"] > 0.5  # its own expert leads its tokens
    model = composed.model
    folder = model.save(tmp_path / "token-mixture")
    assert (folder / "anchor.safetensors").read_bytes() == anchor.read_bytes()
    loaded = TokenMoECausalLM.load(folder, device="cpu")
    texts = lm_domains["food"].eval.texts[:4]
    torch.testing.assert_close(loaded.token_log_probs(texts), model.token_log_probs(texts),
                               equal_nan=True)  # fmt: skip
    (out,) = loaded.generate(["cake sugar honey"], max_new_tokens=5)
    assert len(out.tokens) == 5 and set(out.tokens) <= {SHARED, *model.names}
    from routing.kinds.causal_lm.scoring import perplexity

    tuning = lm_domains["food"].router.texts + lm_domains["weather"].router.texts
    before = perplexity(model.token_log_probs(tuning))
    log = tune_routers(model, tuning, steps=24, lr=2e-2)
    assert log["steps"] == 24
    assert perplexity(model.token_log_probs(tuning)) < before  # the rows learned something


def test_a_token_composition_exports_as_a_mixtral_checkpoint_without_remote_code(
    anchored, tiny_lm_folder, lm_domains, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from routing.kinds.causal_lm.mixtral_export import export_token_composition
    from routing.kinds.causal_lm.token_routing import domain_row

    anchor, files, public = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    experts = [load_lm_expert(files[d], base=base.spec) for d in ("weather", "food")]
    rows = [domain_row(base, public.router.texts, temperature=0.005)]  # the shared expert
    rows += [domain_row(base, lm_domains[d].router.texts, temperature=0.005)
             for d in ("weather", "food")]  # fmt: skip
    model = TokenMoECausalLM(base, experts, ["weather", "food"], routers=torch.stack(rows, 1))
    folder = export_token_composition(model, tmp_path / "mixtral")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mixtral" and "auto_map" not in config
    assert config["num_local_experts"] == 3 and config["num_experts_per_tok"] == 2
    exported = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)  # no remote code, no question
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = exported(**batch).logits
        ours = model.model(**batch).logits
    assert (theirs - ours).abs().max() < 1e-4
    greedy = exported.generate(**batch, max_new_tokens=6, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    new = tokenizer.batch_decode(greedy[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert new == [g.text for g in model.generate(PROMPTS, max_new_tokens=6)]


def test_the_gathered_deltas_follow_an_expert_changed_in_place(
    anchored, tiny_lm_folder, monkeypatch
):
    """Coordinated training changes an expert's pairs in place between forwards: the block
    computes with what they are now, gathered or not."""
    anchor, files, _ = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    expert = load_lm_expert(files["weather"], base=base.spec)
    layer = base.fresh_model().model.layers[0].mlp
    deltas = [ExpertDeltas(), deltas_of(expert.lora_tensors, expert.scale)[0]]
    block = TokenMoEMLP(layer, torch.randn(2, base.hidden_size), deltas, top_k=2)
    x = torch.randn(1, 3, base.hidden_size)
    with torch.no_grad():
        before = block(x)
        for _, b in deltas[1].pairs.values():
            b.mul_(3.0)
        gathered = block(x)
        monkeypatch.setattr("routing.kinds.causal_lm.token_moe.GATHER_TOKENS", 0)
        looped = block(x)
    assert not torch.allclose(gathered, before)
    torch.testing.assert_close(gathered, looped, atol=1e-5, rtol=0)
