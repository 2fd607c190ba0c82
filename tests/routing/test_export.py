"""Export: a composition folder that transformers loads with trust_remote_code and that
predicts what the composition predicts, top-k sparse, with a model card."""

import json

import pytest
import torch
import yaml

from routing.kinds.classification.export import (
    EXPORT_FILES,
    export_composition,
    special_tokens_tail,
)
from routing.model_card import CardInfo, Contributor, combined_licence
from tests.routing.test_composition import TEXTS, _composition, _experts

LONG = " ".join(["rain storm wet cloud"] * 20)  # longer than max_length=32 tokens


@pytest.fixture
def composition(tmp_path, tiny_encoder):
    experts, domains = _experts(tmp_path, tiny_encoder, kinds=("head", "lora", "lora"))
    return _composition(tiny_encoder, experts, domains, top_k=2)


@pytest.fixture
def card(composition):
    pairs = zip(composition.experts, composition.expert_domains, strict=True)
    contributors = [
        Contributor(
            e.name, f"user{i}", d, e.architecture, "mit", e.sha256, share=0.3, drop=0.01 * i
        )
        for i, (e, d) in enumerate(pairs)
    ]
    metrics = {
        "domains": {
            "weather": {"n": 10, "accuracy": 0.9, "macro_f1": 0.88},
            "food": {"n": 12, "accuracy": 0.75, "macro_f1": 0.7},
        },
        "overall": {"n": 22, "accuracy": 0.82, "macro_f1": 0.79},
        "utilisation": {"load": [0.5, 0.3, 0.2], "entropy": 0.94, "under_1pct": 0},
        "routing_matrix": [[0.8, 0.1, 0.1], [0.1, 0.6, 0.3]],
    }
    return CardInfo(
        title="Tiny mixture v3",
        repo_id="org/tiny",
        mixture="tiny",
        version=3,
        contributors=contributors,
        datasets={"weather": "packaged weather"},
        metrics=metrics,
    )


def _load(folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, info = AutoModelForSequenceClassification.from_pretrained(
        folder, trust_remote_code=True, output_loading_info=True
    )
    return model.eval(), AutoTokenizer.from_pretrained(folder, trust_remote_code=True), info


def test_it_exports_a_folder_that_transformers_loads_with_every_weight(tmp_path, composition, card):
    folder = export_composition(composition, tmp_path / "export", card)
    names = {p.name for p in folder.iterdir()}
    assert set(EXPORT_FILES) <= names
    assert "tokenizer.json" in names or "vocab.txt" in names
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_moecollab")
    assert config["auto_map"]["AutoConfig"].startswith("configuration_moecollab")
    assert list(config["id2label"].values()) == composition.labels
    model, _, info = _load(folder)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert type(model).__name__ == "MoECollabForSequenceClassification"


def test_the_base_is_a_shard_of_its_own_that_a_new_version_leaves_byte_identical(
    tmp_path, composition, tiny_encoder
):
    from safetensors import safe_open

    first = export_composition(composition, tmp_path / "v1")
    with safe_open(first / "model-base.safetensors", "pt") as f:
        assert {k.split(".")[0] for k in f.keys()} == {"encoder"}
        assert not any(".lora_" in k for k in f.keys())  # the experts' adapters are theirs
    experts, domains = _experts(tmp_path / "other", tiny_encoder, kinds=("head", "lora"))
    second = export_composition(
        _composition(tiny_encoder, experts, domains, top_k=1), tmp_path / "v2"
    )
    for name, same in (("model-base.safetensors", True), ("model-experts.safetensors", False)):
        assert ((first / name).read_bytes() == (second / name).read_bytes()) is same, name


def test_it_predicts_what_the_composition_predicts_on_short_and_long_texts(
    tmp_path, composition, card
):
    folder = export_composition(composition, tmp_path / "export", card)
    model, tokenizer, _ = _load(folder)
    texts = TEXTS + [LONG, LONG + " sun"]
    want, want_weights = composition.predict_proba(texts)
    batch = tokenizer(texts, padding=True, return_tensors="pt")  # not truncated: the model cuts
    assert batch["input_ids"].shape[1] > composition.encoder.max_length
    with torch.no_grad():
        out = model(**batch)
    assert torch.allclose(out.logits.softmax(-1), want, atol=1e-5)
    assert torch.allclose(out.router_weights, want_weights, atol=1e-5)


def test_it_runs_only_the_experts_the_gate_selects(tmp_path, composition, card):
    folder = export_composition(composition, tmp_path / "export", card)
    model, tokenizer, _ = _load(folder)
    calls = []
    model.encoder.register_forward_hook(lambda m, args, kw_out: calls.append(1))
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    assert ((out.router_weights > 0).sum(-1) <= 2).all()
    routed_lora = [k for k in (1, 2) if (out.router_weights[:, k] > 0).any()]
    assert len(calls) == 1 + len(routed_lora)  # one base pass + one per routed LoRA expert
    calls.clear()
    with torch.no_grad():
        out1 = model(**batch, top_k=1)
    assert ((out1.router_weights > 0).sum(-1) == 1).all()
    assert len(calls) == 1 + sum(bool((out1.router_weights[:, k] > 0).any()) for k in (1, 2))


def test_the_pipeline_gives_the_compositions_labels_and_scores(tmp_path, composition, card):
    from transformers import pipeline

    folder = export_composition(composition, tmp_path / "export", card)
    classify = pipeline("text-classification", model=str(folder), trust_remote_code=True)
    got = classify(TEXTS)
    want = composition.predict(TEXTS)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [round(g["score"], 4) for g in got] == [round(w["score"], 4) for w in want]


def test_it_writes_the_same_bytes_twice(tmp_path, composition, card):
    a = export_composition(composition, tmp_path / "a", card)
    b = export_composition(composition, tmp_path / "b", card)
    for path in sorted(a.iterdir()):
        assert path.read_bytes() == (b / path.name).read_bytes(), path.name
    again = export_composition(composition, tmp_path / "a", card)  # replaces in place
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in b.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_model_card_has_metadata_and_credits_every_contributor(tmp_path, composition, card):
    folder = export_composition(composition, tmp_path / "export", card)
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["license"] == "apache-2.0"  # base apache-2.0 + mit experts
    assert meta["pipeline_tag"] == "text-classification"
    assert "moecollab" in meta["tags"]
    results = meta["model-index"][0]["results"]
    by_domain = {
        (r["dataset"]["name"], m["type"]): m["value"] for r in results for m in r["metrics"]
    }
    assert by_domain[("weather", "accuracy")] == 0.9
    assert by_domain[("food", "f1")] == 0.7
    assert meta["datasets"] == ["packaged-weather"]
    types = {r["dataset"]["name"]: r["dataset"]["type"] for r in results}
    assert types == {"weather": "packaged-weather", "food": "food"}
    for i, c in enumerate(card.contributors):
        assert f"| {c.expert} | user{i} | {c.domain} |" in body
    assert "30.0 %" in body and "+2.00" in body  # share and contribution of user2
    assert "Normalised load entropy 0.940" in body
    assert 'model="org/tiny"' in body
    assert "3 experts contributed by 3 people share the frozen" in body


def test_the_model_card_counts_one_person_in_words(tmp_path, composition, card):
    from dataclasses import replace

    one = replace(card, contributors=[replace(c, user="alice") for c in card.contributors])
    body = (export_composition(composition, tmp_path / "export", one) / "README.md").read_text()
    assert "3 experts contributed by one person share the frozen" in body
    assert "1 people" not in body


@pytest.mark.parametrize(
    "licences, expected",
    [
        (["apache-2.0", "apache-2.0"], ("apache-2.0", None)),
        (["apache-2.0", "mit"], ("apache-2.0", None)),
        (["apache-2.0", "mit", "cc-by-4.0"], ("cc-by-4.0", None)),
        (["apache-2.0", "cc-by-sa-4.0"], ("cc-by-sa-4.0", None)),
        (["apache-2.0", "cc-by-nc-4.0", "mit"], ("cc-by-nc-4.0", None)),
        (["cc-by-sa-4.0", "cc-by-nc-4.0"], ("other", "mixed-licences")),
        (["apache-2.0", "gpl-3.0"], ("other", "mixed-licences")),
    ],
)
def test_the_licence_of_a_combination_is_its_most_restrictive_part(licences, expected):
    assert combined_licence(licences) == expected


def test_it_counts_the_special_tokens_a_tokenizer_appends(tiny_encoder):
    assert special_tokens_tail(tiny_encoder.tokenizer) == 1  # BERT's [SEP]


def test_the_cli_predicts_from_the_hubs_zip_and_its_unzipped_folder(
    tmp_path, composition, card, capsys
):
    import zipfile

    from routing.cli import main

    folder = export_composition(composition, tmp_path / "tiny-v3", card)
    archive = tmp_path / "tiny-v3.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # laid out as the hub's download is
        for path in folder.iterdir():
            zf.write(path, f"tiny-v3/{path.name}")
    texts = ["lemon vinegar lime sour tart", "rain wet storm cloud umbrella"]
    expected = [
        f"{p['label']}\t{p['score']:.3f}\t{p['domain']}" for p in composition.predict(texts)
    ]
    for target in (archive, folder):
        assert main(["predict", str(target), *texts, "--device", "cpu"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert [line.rsplit("\t", 1)[0] for line in lines] == expected


def test_the_model_card_names_the_domains_without_an_expert(tmp_path, composition, card):
    from dataclasses import replace

    partial = replace(card, missing_domains=["sport"])
    body = (export_composition(composition, tmp_path / "e", partial) / "README.md").read_text()
    assert "domains with no expert yet: `sport`" in body
    assert "cover only the 2 domains it has experts for" in body


def test_the_pipeline_takes_texts_over_512_tokens_without_a_warning(
    tmp_path, composition, card, caplog, monkeypatch
):
    from transformers import AutoTokenizer, pipeline

    load = AutoTokenizer.from_pretrained

    def like_minilm(*args, **kwargs):  # a base whose tokenizer stops at 512, as MiniLM's
        tokenizer = load(*args, **kwargs)
        tokenizer.model_max_length = 512
        return tokenizer

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", like_minilm)
    folder = export_composition(composition, tmp_path / "export", card)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", load)
    classify = pipeline("text-classification", model=str(folder), trust_remote_code=True)
    very_long = " ".join(["rain storm wet cloud"] * 200)  # 800 tokens
    with caplog.at_level("WARNING"):
        label = classify(very_long)[0]["label"]
    assert label == composition.predict([very_long])[0]["label"]
    assert "longer than the specified maximum" not in caplog.text
