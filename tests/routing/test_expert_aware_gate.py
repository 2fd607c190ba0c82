"""A classification gate that reads its calibrated experts: calibration, the signals, the
widened gate of a warm start, composing, saving, and the exported model's parity."""

import json

import pytest
import torch

from routing.config import ClassifierRouting, GateConfig
from routing.gate import Gate
from routing.kinds.classification.calibration import (
    TEMPERATURE_GRID,
    calibrated,
    expert_signals,
    fit_temperatures,
)
from routing.kinds.classification.composing import cached_split, compose
from routing.kinds.classification.export import export_composition
from routing.kinds.classification.model import MoEClassifier
from tests.routing.test_composition import TEXTS, _experts


def _overconfident(n=4000, labels=5, sharpen=3.0, seed=0):
    """(probs (n, 1, U), targets): an expert whose logits are `sharpen` times those of a
    calibrated one, so its fitted temperature should be about `sharpen`."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, labels, generator=g) * 1.5
    targets = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
    probs = (logits * sharpen).softmax(-1)[:, None, :]
    return probs, targets


def test_an_overconfident_expert_gets_the_temperature_that_undoes_it():
    probs, targets = _overconfident(sharpen=3.0)
    masks = torch.ones(1, 5, dtype=torch.bool)
    mine = torch.ones(len(targets), 1, dtype=torch.bool)
    t = float(fit_temperatures(probs, targets, mine, masks)[0])
    assert 2.6 < t < 3.4, t  # the grid is about 9 % apart

    def nll(p):
        return float(-p[:, 0].gather(1, targets[:, None]).log().mean())

    assert nll(calibrated(probs, torch.tensor([t]), masks)) < nll(probs) - 0.1
    # no labelled example of its own domain: the expert is left as it is
    assert float(fit_temperatures(probs, targets, ~mine, masks)[0]) == 1.0


def test_calibration_keeps_each_expert_on_its_own_labels():
    probs = torch.zeros(3, 2, 4)
    probs[:, 0, :2] = torch.tensor([0.9, 0.1])
    probs[:, 1, 1:] = torch.tensor([0.2, 0.3, 0.5])
    masks = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    out = calibrated(probs, torch.tensor([2.0, 0.5]), masks)
    assert torch.allclose(out.sum(-1), torch.ones(3, 2))
    assert (out[:, 0, 2:] == 0).all() and (out[:, 1, 0] == 0).all()
    assert out[0, 0, 0] < 0.9 and out[0, 1, 3] > 0.5  # flattened, sharpened
    assert calibrated(probs, torch.ones(2), masks) is probs
    assert float(TEMPERATURE_GRID.min()) == pytest.approx(0.25)


def test_signals_are_each_experts_top_probability_and_normalised_entropy_in_order():
    probs = torch.zeros(1, 2, 4)
    probs[0, 0, :2] = 0.5  # unsure over its two labels
    probs[0, 1, 3] = 1.0  # certain
    masks = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    signals = expert_signals(probs, masks)
    assert torch.allclose(signals, torch.tensor([[0.5, 1.0, 1.0, 0.0]]), atol=1e-6)


@pytest.mark.parametrize("hidden", [0, 16])
def test_a_widened_gate_routes_nearly_as_before_until_it_learns_the_new_signals(hidden):
    torch.manual_seed(0)
    gate = Gate(64, 3, GateConfig(hidden=hidden), side_dim=4).eval()
    with torch.no_grad():
        gate.out.weight.mul_(20)  # decided routing, as a trained gate's
    x = torch.cat([torch.randn(400, 64) * 0.3, torch.rand(400, 4)], -1)
    wider = gate.widened(6).eval()
    assert wider.side_dim == 6 and wider.norm.weight.shape == (70,)
    new_signals = torch.rand(400, 2)
    before = gate(x).probs
    after = wider(torch.cat([x, new_signals], -1)).probs
    assert (after.argmax(-1) == before.argmax(-1)).float().mean() > 0.95
    assert (after - before).abs().max() < 0.2
    # the new signals are read through the normalisation only: two values out of 70
    changed = wider(torch.cat([x, torch.rand(400, 2)], -1)).probs
    assert not torch.equal(changed, after) and (changed - after).abs().max() < 0.2
    with pytest.raises(ValueError, match="cannot read fewer"):
        gate.widened(2)


def test_the_hubs_compositions_read_their_calibrated_head_experts(
    trained, tiny_encoder, cache, tmp_path
):
    data, experts = trained
    names = list(data)
    composed = compose(tiny_encoder, experts, names, data, cache=cache)
    model, report = composed.model, composed.report
    assert model.reads_experts and model.gate.side_dim == 2 * len(experts)
    assert model.gate_features == "mean-cls-middle"
    assert model.gate.in_dim == 3 * tiny_encoder.hidden_size  # last mean, [CLS], middle mean
    assert model.temperatures.shape == (3,) and (model.temperatures > 0).all()
    defaults = {
        "gate_features": "mean-cls-middle",
        "read_experts": True,
        "calibrate": True,
        "balance_domains": True,
    }
    assert model.info["routing"] == defaults
    assert model.info["train"]["balance_domains"] is True
    assert (torch.tensor(report["routing_matrix"]).diagonal() > 0.9).all(), report
    # the texts run through the model as its cached tensors say
    ev = composed.eval_split
    texts = [t for d in names for t in data[d].eval.texts]
    probs, weights = model.predict_proba(texts)
    cached_probs, cached_weights = model.mix_cached(ev.gate_features, ev.expert_probs)
    assert torch.allclose(weights, cached_weights, atol=1e-5)
    assert torch.allclose(probs, cached_probs, atol=1e-5)
    # saved and loaded, it reads and calibrates the same way
    loaded = MoEClassifier.load(model.save(tmp_path / "c"), encoder=tiny_encoder)
    assert loaded.reads_experts and torch.allclose(loaded.temperatures, model.temperatures)
    assert loaded.gate_features == "mean-cls-middle"
    assert torch.allclose(loaded.predict_proba(texts)[0], probs, atol=1e-6)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["gate_reads_experts"] is True and len(config["temperatures"]) == 3


def test_an_expert_that_joins_warm_starts_the_gate_that_reads_the_experts(
    trained, tiny_encoder, cache
):
    data, experts = trained
    two = {k: data[k] for k in ("weather", "food")}
    old = compose(tiny_encoder, experts[:2], list(two), two, cache=cache).model
    assert old.gate.side_dim == 4 and (old.temperatures != 1).any()
    one = {"weather": data["weather"]}
    alone = compose(tiny_encoder, experts[:1], ["weather"], one, cache=cache).model
    assert alone.temperatures.tolist() == [1.0]  # one expert is not mixed, so not calibrated
    composed = compose(tiny_encoder, experts, list(data), data, cache=cache, previous=old)
    assert composed.model.info["warm_start"] is True and composed.model.gate.side_dim == 6
    matrix = torch.tensor(composed.report["routing_matrix"])
    assert (matrix.diagonal() > 0.9).all(), matrix
    # a previous gate that read other inputs (features only) is not warm-started from
    plain = compose(
        tiny_encoder, experts[:2], list(two), two, cache=cache,
        routing=ClassifierRouting(read_experts=False),
    )  # fmt: skip
    fresh = compose(tiny_encoder, experts, list(data), data, cache=cache, previous=plain.model)
    assert fresh.model.info["warm_start"] is False and fresh.model.reads_experts


def test_a_mixture_with_a_lora_expert_keeps_a_gate_on_the_features(tmp_path, tiny_encoder, cache):
    experts, domains = _experts(tmp_path, tiny_encoder, kinds=("head", "lora"))
    from devtools.tiny import synthetic_domain

    data = {d: synthetic_domain(d, 60) for d in domains}
    composed = compose(tiny_encoder, experts, domains, data, cache=cache)
    assert composed.model.reads_experts is False and composed.model.gate.side_dim == 0
    assert composed.model.info["routing"]["read_experts"] is True  # asked, but not possible
    with pytest.raises(ValueError, match="head experts only"):
        MoEClassifier(
            tiny_encoder, experts, domains, Gate(tiny_encoder.hidden_size, 2, side_dim=4),
            reads_experts=True,
        )  # fmt: skip
    how = composed.model.gate_features
    split = cached_split(experts, domains, data, "eval", tiny_encoder, cache, gate_features=how)
    texts = [t for d in dict.fromkeys(domains) for t in data[d].eval.texts]
    probs, _ = composed.model.predict_proba(texts)
    cached, _ = composed.model.mix_cached(split.gate_features, split.expert_probs)
    assert torch.allclose(probs, cached, atol=1e-5)


def test_the_exported_model_reads_and_calibrates_its_experts_as_the_hub_does(
    tmp_path, tiny_encoder
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    experts, domains = _experts(tmp_path, tiny_encoder, kinds=("head", "head", "head"))
    torch.manual_seed(1)
    width = 3 * tiny_encoder.hidden_size  # the last layer's mean and [CLS], the middle's mean
    gate = Gate(width, 3, GateConfig(top_k=2, hidden=8), side_dim=6)
    with torch.no_grad():
        gate.hidden.weight[:, -6:] += torch.randn(8, 6) * 3  # the signals matter
    temps = torch.tensor([0.5, 0.3, 2.5])
    options = {"reads_experts": True, "gate_features": "mean-cls-middle"}
    model = MoEClassifier(tiny_encoder, experts, domains, gate, temperatures=temps, **options)
    folder = export_composition(model, tmp_path / "export")
    config = json.loads((folder / "config.json").read_text())
    assert config["gate"]["reads_experts"] is True
    assert config["gate"]["features"] == "mean-cls-middle"
    assert config["gate"]["expert_temperatures"] == [0.5, 0.3, 2.5]
    exported = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    want, want_weights = model.predict_proba(TEXTS)
    with torch.no_grad():
        out = exported.eval()(**tokenizer(TEXTS, padding=True, return_tensors="pt"))
    assert torch.allclose(out.logits.softmax(-1), want, atol=1e-5)
    assert torch.allclose(out.router_weights, want_weights, atol=1e-5)
    # and the temperatures and the signals change the answer (the test can fail)
    uncalibrated = MoEClassifier(tiny_encoder, experts, domains, gate, **options)
    assert not torch.allclose(uncalibrated.predict_proba(TEXTS)[0], want, atol=1e-3)
    deaf = Gate(width, 3, GateConfig(top_k=2, hidden=8), side_dim=6)
    deaf.load_state_dict(gate.state_dict())
    with torch.no_grad():
        deaf.hidden.weight[:, -6:] = 0
    deaf_model = MoEClassifier(tiny_encoder, experts, domains, deaf, temperatures=temps, **options)
    assert not torch.allclose(deaf_model.predict_proba(TEXTS)[1], want_weights, atol=1e-3)


def test_one_base_pass_gives_the_gate_its_features_and_the_heads_theirs(tiny_encoder, cache):
    texts = TEXTS * 3
    gate_features = cache.gate_features(tiny_encoder, texts, "mean-cls-middle")
    d = tiny_encoder.hidden_size
    assert gate_features.shape == (len(texts), 3 * d)
    misses = cache.misses
    mean = cache.features(tiny_encoder, texts)  # written by the same pass
    assert cache.misses == misses
    assert torch.allclose(mean, tiny_encoder.embed(texts), atol=1e-5)
    assert torch.allclose(gate_features[:, :d], mean)
    assert not torch.allclose(gate_features[:, d : 2 * d], mean, atol=1e-3)  # [CLS]
    with pytest.raises(ValueError, match="gate features are one of"):
        tiny_encoder.base_pass(tiny_encoder.tokenize(TEXTS), "cls")
