"""MoEClassifier equivalences: one expert, dense vs top-k, sparse vs dense, label union."""

import pytest
import torch

from devtools.experts import make_head_file, make_lora_file
from routing.config import GateConfig
from routing.gate import Gate, top_k_weights
from routing.kinds.classification.experts import load_expert
from routing.kinds.classification.model import MoEClassifier, union_labels

TEXTS = [
    "sun warm the clear",
    "rain storm wet of",
    "cake honey sugar and",
    "lemon lime tart in",
    "salt chips olive is",
    "cloud grey flood it",
    "bright dry summer was",
    "jam cookie candy",
]


def _experts(tmp_path, encoder, kinds=("head", "lora", "head")):
    specs = [
        ("weather", ["rainy", "sunny"]),
        ("food", ["salty", "sour", "sweet"]),
        ("mood", ["sunny", "grumpy"]),
    ]
    experts, domains = [], []
    for i, kind in enumerate(kinds):
        domain, labels = specs[i % len(specs)]
        make = make_head_file if kind == "head" else make_lora_file
        path = make(tmp_path / f"e{i}.safetensors", encoder, labels, domain, seed=i)
        experts.append(load_expert(path, base=encoder.spec, name=f"e{i}"))
        domains.append(domain)
    return experts, domains


def _composition(encoder, experts, domains, top_k):
    torch.manual_seed(1)
    gate = Gate(encoder.hidden_size, len(experts), GateConfig(top_k=top_k, hidden=16))
    return MoEClassifier(encoder, experts, domains, gate)


def _dense_expert_probs(comp: MoEClassifier, texts) -> torch.Tensor:
    """Every expert on every text, in the union space: (B, N, U)."""
    outs = []
    with torch.inference_mode():
        batch = comp.encoder.tokenize(texts)
        feats = comp.encoder.pooled(batch)
        for k, expert in enumerate(comp.experts):
            if expert.architecture == "head":
                logits = expert.head(feats)
            else:
                logits = expert.classifier(
                    comp.encoder.pooled(batch, adapter=comp.adapter_names[k])
                )
            outs.append(logits.softmax(-1))
        return comp.to_union(outs), feats


def test_union_keeps_first_appearance_and_merges_equal_names():
    assert union_labels([["rainy", "sunny"], ["sunny", "grumpy"]]) == ["rainy", "sunny", "grumpy"]


def test_a_one_expert_composition_equals_that_expert(tmp_path, tiny_encoder):
    for kind in ("head", "lora"):
        experts, domains = _experts(tmp_path / kind, tiny_encoder, (kind,))
        comp = _composition(tiny_encoder, experts, domains, top_k=1)
        probs, weights = comp.predict_proba(TEXTS)
        expected, _ = _dense_expert_probs(comp, TEXTS)
        assert torch.allclose(weights, torch.ones(len(TEXTS), 1))
        assert torch.allclose(probs, expected[:, 0], atol=1e-6)


def test_top_k_equal_to_n_is_the_dense_mixture(tmp_path, tiny_encoder):
    experts, domains = _experts(tmp_path, tiny_encoder)
    comp = _composition(tiny_encoder, experts, domains, top_k=3)
    probs, weights = comp.predict_proba(TEXTS)
    expert_probs, feats = _dense_expert_probs(comp, TEXTS)
    with torch.inference_mode():
        gate_probs = torch.softmax(comp.gate.out(comp.gate.represent(feats)), -1)
    assert torch.allclose(weights, gate_probs, atol=1e-6)
    assert torch.allclose(probs, torch.einsum("bn,bnu->bu", gate_probs, expert_probs), atol=1e-5)
    assert torch.allclose(probs.sum(-1), torch.ones(len(TEXTS)), atol=1e-5)


@pytest.mark.parametrize("k", [1, 2])
def test_sparse_execution_agrees_with_dense_on_the_selected_experts(tmp_path, tiny_encoder, k):
    experts, domains = _experts(tmp_path, tiny_encoder)
    comp = _composition(tiny_encoder, experts, domains, top_k=k)
    probs, weights = comp.predict_proba(TEXTS)
    expert_probs, feats = _dense_expert_probs(comp, TEXTS)
    with torch.inference_mode():
        full = torch.softmax(comp.gate.out(comp.gate.represent(feats)), -1)
    expected_w = top_k_weights(full, k)
    assert ((weights > 0).sum(-1) == k).all()
    assert torch.allclose(weights, expected_w, atol=1e-6)
    assert torch.allclose(probs, torch.einsum("bn,bnu->bu", expected_w, expert_probs), atol=1e-5)


def test_sparse_execution_runs_only_the_selected_experts(tmp_path, tiny_encoder):
    experts, domains = _experts(tmp_path, tiny_encoder)
    comp = _composition(tiny_encoder, experts, domains, top_k=1)
    seen = {}
    for k, expert in enumerate(experts):
        module = expert.head if expert.architecture == "head" else expert.classifier
        module.register_forward_hook(lambda m, i, o, k=k: seen.setdefault(k, []).append(len(o)))
    _, weights = comp.predict_proba(TEXTS)
    routed = (weights > 0).sum(0).tolist()
    assert sum(routed) == len(TEXTS)
    for k, count in enumerate(routed):
        assert sum(seen.get(k, [])) == count


def test_heterogeneous_label_sets_map_into_the_union(tmp_path, tiny_encoder):
    experts, domains = _experts(tmp_path, tiny_encoder)
    comp = _composition(tiny_encoder, experts, domains, top_k=3)
    assert comp.labels == ["rainy", "sunny", "salty", "sour", "sweet", "grumpy"]
    expert_probs, _ = _dense_expert_probs(comp, TEXTS)
    # The mood expert puts mass on 'sunny' (shared with weather) and 'grumpy' only.
    assert torch.all(expert_probs[:, 2, [0, 2, 3, 4]] == 0)
    assert torch.allclose(expert_probs[:, 2, [1, 5]].sum(-1), torch.ones(len(TEXTS)))


def test_a_composition_saves_and_loads_with_the_same_predictions(tmp_path, tiny_encoder):
    experts, domains = _experts(tmp_path, tiny_encoder)
    comp = _composition(tiny_encoder, experts, domains, top_k=2)
    comp.save(tmp_path / "mix")
    assert {p.name for p in (tmp_path / "mix").iterdir()} == {"config.json", "model.safetensors"}
    loaded = MoEClassifier.load(tmp_path / "mix", device="cpu")
    assert loaded.encoder is not tiny_encoder
    p1, w1 = comp.predict_proba(TEXTS)
    p2, w2 = loaded.predict_proba(TEXTS)
    assert torch.allclose(p1, p2, atol=1e-5) and torch.allclose(w1, w2, atol=1e-6)
    assert [p["label"] for p in loaded.predict(TEXTS)] == [comp.labels[i] for i in p1.argmax(-1)]
