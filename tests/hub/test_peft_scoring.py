"""A contributor's plain PEFT SEQ_CLS adapter, uploaded through the API, is scored by the
hub's validation, run by its composition and exported exactly as PEFT runs it."""

import pytest
import torch

from devtools.experts import peft_probabilities, save_seq_cls_adapter
from devtools.tiny import synthetic_rows
from experts.models import Composition, Expert, Job
from tests.hub.test_uploads import post_api

FOOD = ["salty", "sour", "sweet"]


@pytest.fixture
def cache_dir(settings, tmp_path):
    settings.MOECOLLAB_CACHE_DIR = tmp_path / "worker-cache"
    return settings.MOECOLLAB_CACHE_DIR


def test_the_hub_scores_composes_and_exports_a_seq_cls_adapter_as_peft_does(
    alice, living_mixture, tiny_encoder, tmp_path, media, cache_dir, sent,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    from experts.services import compositions, resources, validation
    from experts.services.domains import domain_data
    from experts.services.exports import ensure_export

    folder = save_seq_cls_adapter(
        tmp_path / "food-adapter", tiny_encoder, FOOD, rows=synthetic_rows("food", 300), steps=60
    )
    with open(folder / "adapter_config.json", "rb") as config, \
            django_capture_on_commit_callbacks(execute=True):  # fmt: skip
        response = post_api(
            alice, folder / "adapter_model.safetensors", domain="food", adapter_config=config
        )
    assert response.status_code == 201, response.content
    expert = Expert.objects.get()

    # validation, as the worker runs it
    held_out = domain_data(expert.domain).eval
    expected = peft_probabilities(folder, tiny_encoder, len(FOOD), held_out.texts)  # (n, L)
    with django_capture_on_commit_callbacks(execute=True):
        validation.validate(Job.objects.get(expert=expert).pk)
    expert.refresh_from_db()
    assert expert.status == "accepted", expert.report
    truth = torch.tensor([FOOD.index(label) for label in held_out.labels])
    peft_accuracy = (expected.argmax(-1) == truth).float().mean().item()
    assert expert.metrics["accuracy"] == pytest.approx(peft_accuracy, abs=1e-9)

    def never(*_):
        raise AssertionError("validation did not cache the expert's outputs")

    loaded = resources.loaded_expert(expert)
    encoder = resources.base_for(living_mixture)
    scored = resources.tensor_cache().expert_outputs(
        loaded.output_key, encoder, held_out.texts, never
    )
    torch.testing.assert_close(scored.exp(), expected, atol=1e-5, rtol=0)

    # the composition the retrain stores, and its export
    # the accept queued one retrain of the mixture
    (job,) = Job.objects.filter(action=Job.Action.RETRAIN)
    assert job.mixture == living_mixture and job.status == "queued"
    compositions.retrain(job.pk)
    stored = Composition.objects.get(is_current=True)
    routed = resources.load_model(stored)
    probs, _ = routed.predict_proba(held_out.texts)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=0)

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    exported = ensure_export(stored)
    model = AutoModelForSequenceClassification.from_pretrained(exported, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    batch = tokenizer(held_out.texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        exported_probs = model.eval()(**batch).logits.softmax(-1)
    torch.testing.assert_close(exported_probs, expected, atol=1e-5, rtol=0)
