"""The language-model hub on the real SmolLM2-135M-Instruct base: a contributor's PEFT
adapter, trained on Python source for a few steps, is validated against the packaged
base's perplexity on held-out code."""

import pytest

from experts.models import Domain, Expert, Job, Mixture

pytestmark = [pytest.mark.smollm2]


def test_a_peft_adapter_on_smollm2_is_validated_by_its_held_out_perplexity(
    alice, charlie, media, tmp_path, settings, django_capture_on_commit_callbacks, sent
):
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from experts.services import validation
    from experts.services.basemodels import register_base_model
    from experts.services.domains import import_domain_data
    from experts.services.mixtures import clean_routing
    from experts.services.resources import base_for
    from routing.basemodels import DEFAULT_LM_BASE
    from routing.data import Split
    from routing.kinds.causal_lm.corpora import load_corpus
    from routing.kinds.causal_lm.layout import MLP_PROJECTIONS
    from routing.kinds.causal_lm.training import train_lm_lora
    from tests.hub.lm_mixture import upload_adapter

    settings.MOECOLLAB_CACHE_DIR = tmp_path / "cache"
    base_model = register_base_model(DEFAULT_LM_BASE, "causal-lm")
    assert (base_model.hidden_size, base_model.kv_size) == (576, 192)
    mixture = Mixture.objects.create(
        slug="code", name="Code", base_model=base_model, kind="causal-lm",
        routing=clean_routing({}, "causal-lm"), tolerance=0.0,
    )  # fmt: skip
    mixture.maintainers.add(charlie)
    corpus = load_corpus("python")
    domain = Domain.objects.create(mixture=mixture, name="python")
    import_domain_data(domain, Split(corpus.router.texts + corpus.eval.texts).limited(16))
    # the contributor's side: PEFT on the packaged weights, saved the ordinary way (on the
    # very base the worker loads: one load of SmolLM2 for both sides)
    base = base_for(mixture)
    lora = train_lm_lora(base, corpus.train.limited(16).texts, r=8, alpha=16, lr=2e-3, epochs=2)
    config = LoraConfig(
        task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=list(MLP_PROJECTIONS)
    )
    model = get_peft_model(base.fresh_model(), config)
    set_peft_model_state_dict(model, {f"base_model.model.{k}": v for k, v in lora.items()})
    model.save_pretrained(tmp_path / "python-expert")
    with django_capture_on_commit_callbacks(execute=True):
        expert = upload_adapter(alice, tmp_path / "python-expert", "python", mixture="code")
    assert sent[0][1]["queue"] == "lm"
    validation.validate(Job.objects.get(expert=expert).pk)
    expert = Expert.objects.get(pk=expert.pk)
    assert expert.status == "accepted", expert.report
    metrics = expert.metrics
    assert metrics["perplexity"] < metrics["base_perplexity"] and metrics["eval_texts"] > 0
    assert expert.report["summary"].startswith("held-out perplexity")
