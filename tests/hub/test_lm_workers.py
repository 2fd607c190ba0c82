"""Language-model mixtures through real prefork workers on Redis and PostgreSQL, on a tiny
random Llama: a PEFT adapter is validated, composed, exported and generates on the hub
what transformers generates from the export; an expert that makes its domain worse is
rejected with the figures."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import pytest

from devtools.tiny_lm import save_lm_peft_adapter
from experts.models import Composition, Expert, Job
from tests.hub.conftest import api_client, status_of
from tests.hub.lm_mixture import (  # noqa: F401 (fixtures)
    hub_lm_folder,
    lm_mixture,
    trained_adapter,
    upload_adapter,
)
from tests.hub.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]
PROMPT = "rain storm wet cloud umbrella"


def test_a_peft_adapter_becomes_a_composition_that_generates_as_its_export_does(
    alice, lm_mixture, hub_lm_folder, workers, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from experts.services.storage import download_ready, export_folder

    workers().start()
    weather = upload_adapter(alice, trained_adapter(tmp_path / "weather", hub_lm_folder,
                                                    "weather"), "weather")  # fmt: skip
    wait_for(lambda: status_of(weather) in ("accepted", "rejected"), what="a verdict")
    weather.refresh_from_db()
    assert weather.status == "accepted", weather.report
    assert weather.metrics["perplexity"] < weather.metrics["base_perplexity"]
    job = Job.objects.get(expert=weather, action="validate")
    assert job.attempts == 1
    v1 = wait_for(lambda: Composition.objects.filter(is_current=True).first(), what="v1")
    assert set(v1.metrics["domains"]) == {"weather"}
    assert (
        v1.metrics["domains"]["weather"]["perplexity"]
        < v1.metrics["domains"]["weather"]["base_perplexity"]
    )
    wait_for(lambda: download_ready(v1), what="the export")
    response = api_client(alice).post(
        f"/api/compositions/{v1.pk}/generate/", {"prompt": PROMPT, "max_new_tokens": 6},
        format="json",
    )  # fmt: skip
    assert response.status_code == 202, response.content
    generated = wait_for(
        lambda: Job.objects.filter(pk=response.json()["id"], status="succeeded").first(),
        what="the generation",
    )
    assert generated.result["experts"] == [[weather.name + f" #{weather.pk}", 1.0]]
    folder = export_folder(v1)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    batch = tokenizer([PROMPT], return_tensors="pt")
    tokens = model.generate(**batch, max_new_tokens=6, do_sample=False)
    expected = tokenizer.decode(tokens[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert generated.result["text"] == expected


def test_an_expert_that_makes_its_domain_worse_is_rejected_with_the_figures(
    alice, lm_mixture, hub_lm_folder, workers, tmp_path
):
    workers().start()
    folder = save_lm_peft_adapter(tmp_path / "noise", hub_lm_folder, r=4, scale=1.0)  # noise
    expert = upload_adapter(alice, folder, "food")
    wait_for(lambda: status_of(expert) in ("accepted", "rejected"), what="a verdict")
    expert = Expert.objects.get(pk=expert.pk)
    assert expert.status == "rejected"
    (problem,) = expert.report["problems"]
    assert "% higher" in problem and "base model's" in problem
    assert expert.metrics["perplexity"] > expert.metrics["base_perplexity"]
    assert not Composition.objects.exists()
