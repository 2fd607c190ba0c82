"""A plain PEFT SEQ_CLS adapter is computed as PEFT and transformers compute it: BERT's
pooler over [CLS], the adapter's own pooler or its LoRA on `pooler.dense`, its
classifier; in the expert's scores, in a composition and in the export."""

import json

import pytest
import torch

from devtools.experts import peft_probabilities, save_plain_peft_adapter, save_seq_cls_adapter
from routing.kinds.classification.composing import expert_log_probs
from routing.kinds.classification.contract import check_expert_file
from routing.kinds.classification.experts import load_expert
from routing.kinds.classification.export import export_composition
from routing.kinds.classification.layout import CLS_POOLER, MEAN
from routing.kinds.classification.model import MoEClassifier
from routing.safetensors_header import ContractError
from tests.routing.test_composition import TEXTS

LABELS = ["salty", "sour", "sweet"]
VARIANTS = {
    "lora on query and value": {},
    "lora on every dense layer, the pooler's too": {"target_modules": ("query", "dense")},
    "the pooler saved whole": {"modules_to_save": ["classifier", "pooler"]},
}


def _adapter(tmp_path, encoder, **options):
    folder = save_seq_cls_adapter(tmp_path / "seq-cls", encoder, LABELS, **options)
    return folder, folder / "adapter_model.safetensors"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_seq_cls_adapter_gives_peft_probabilities_everywhere(
    variant, tmp_path, tiny_encoder, cache
):
    folder, path = _adapter(tmp_path, tiny_encoder, **VARIANTS[variant])
    expected = peft_probabilities(folder, tiny_encoder, len(LABELS), TEXTS)  # (n, L)

    expert = load_expert(path, base=tiny_encoder.spec, labels=LABELS, name="seq-cls")
    assert expert.pooling == CLS_POOLER
    scored = expert_log_probs(expert, tiny_encoder, TEXTS, cache).exp()  # what validation reads
    torch.testing.assert_close(scored, expected, atol=1e-5, rtol=0)

    composition = MoEClassifier.of_one(tiny_encoder, expert, "food")
    probs, _ = composition.predict_proba(TEXTS)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=0)

    reloaded = MoEClassifier.load(composition.save(tmp_path / "composition"), encoder=tiny_encoder)
    torch.testing.assert_close(reloaded.predict_proba(TEXTS)[0], expected, atol=1e-5, rtol=0)

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    exported = export_composition(composition, tmp_path / "export")
    model = AutoModelForSequenceClassification.from_pretrained(exported, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    with torch.no_grad():
        logits = model.eval()(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(logits.softmax(-1), expected, atol=1e-5, rtol=0)


def test_mean_pooling_would_have_scored_it_as_another_model(tmp_path, tiny_encoder):
    """The bug this guards against: the same tensors read through mean pooling."""
    folder, path = _adapter(tmp_path, tiny_encoder)
    expected = peft_probabilities(folder, tiny_encoder, len(LABELS), TEXTS)
    expert = load_expert(path, base=tiny_encoder.spec, labels=LABELS)
    expert.header.pooling = MEAN
    probs, _ = MoEClassifier.of_one(tiny_encoder, expert, "food").predict_proba(TEXTS)
    assert (probs - expected).abs().max() > 1e-2


def test_the_mean_pooling_adapter_of_the_docs_keeps_its_pooling(tmp_path, tiny_encoder):
    save_plain_peft_adapter(tmp_path / "peft", tiny_encoder, len(LABELS))
    header = check_expert_file(
        tmp_path / "peft" / "adapter_model.safetensors", base=tiny_encoder.spec, labels=LABELS
    )
    assert (header.pooling, header.pooler_keys) == (MEAN, {})


def _config(folder) -> dict:
    return json.loads((folder / "adapter_config.json").read_text())


def _refusal(path, config, encoder) -> ContractError:
    with pytest.raises(ContractError) as caught:
        check_expert_file(path, base=encoder.spec, labels=LABELS, adapter_config=config)
    return caught.value


def test_an_adapter_for_another_task_is_refused_by_its_task_type(tmp_path, tiny_encoder):
    folder, path = _adapter(tmp_path, tiny_encoder)
    config = {**_config(folder), "task_type": "CAUSAL_LM"}
    error = _refusal(path, config, tiny_encoder)
    assert error.code == "bad_task_type"
    assert "'CAUSAL_LM'" in str(error) and "SEQ_CLS" in str(error)


def test_modules_the_hub_cannot_run_are_refused_by_name(tmp_path, tiny_encoder):
    folder, path = _adapter(tmp_path, tiny_encoder)
    config = {**_config(folder), "modules_to_save": ["classifier", "embeddings"]}
    error = _refusal(path, config, tiny_encoder)
    assert error.code == "bad_lora" and "['embeddings']" in str(error)


def test_a_pooler_in_a_mean_pooling_adapter_is_refused(tmp_path, tiny_encoder):
    folder, path = _adapter(tmp_path, tiny_encoder, modules_to_save=["classifier", "pooler"])
    config = {**_config(folder), "task_type": None, "modules_to_save": ["classifier"]}
    error = _refusal(path, config, tiny_encoder)
    assert error.code == "unexpected_tensor" and "only a SEQ_CLS adapter" in str(error)


def test_a_base_without_trained_pooler_weights_refuses_an_adapter_that_reads_it(
    tmp_path, tiny_encoder, cache
):
    _, path = _adapter(tmp_path, tiny_encoder)
    expert = load_expert(path, base=tiny_encoder.spec, labels=LABELS)
    tiny_encoder.pooler_state = None  # as for a checkpoint saved without its pooler
    with pytest.raises(ContractError) as caught:
        expert_log_probs(expert, tiny_encoder, TEXTS, cache)
    assert caught.value.code == "wrong_base_model"
    assert "modules_to_save=['classifier', 'pooler']" in str(caught.value)


def test_the_tiny_base_loads_its_trained_pooler(tiny_encoder):
    assert tiny_encoder.pooler_state is not None
    assert tiny_encoder.pooler_state["weight"].shape == (32, 32)
