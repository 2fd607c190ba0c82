"""Language-model mixtures on the site and the API: maintainers open one and give its
domains text, contributors upload, the pages say how to train an expert and show
perplexity, and anyone logged in tries a composition (a worker generates)."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import io
import json
import re
import zipfile

import pytest
from django.test import Client

from devtools.tiny_lm import lm_texts
from experts.models import BaseModel, Job
from tests.hub.conftest import api_client
from tests.hub.lm_mixture import (  # noqa: F401 (fixtures)
    adapter_config,
    hub_lm_folder,
    lm_mixture,
    lm_stored,
    trained_adapter,
    upload_adapter,
)
from tests.hub.published import hub_server  # noqa: F401 (fixtures)
from tests.hub.test_experts_access import client_for


def test_maintainers_open_a_language_model_mixture_on_a_causal_lm_base(alice, lm_mixture):
    client = api_client(alice)
    lm_base = lm_mixture.base_model.name
    answer = client.post("/api/mixtures/", {"slug": "my-lm", "name": "My LM", "kind":
                         "causal-lm", "base_model": lm_base}, format="json")  # fmt: skip
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["kind"] == "causal-lm" and body["routing"]["gate"]["top_k"] == 1
    assert body["task_type"] == "causal-lm"  # the name before 0.2, still answered
    assert body["routing"]["lm"] == {
        "prefix_tokens": 32, "layer": -1, "router": "learned", "mixing": "mix",
        "granularity": "sequence", "token_top_k": 2, "token_temperature": 0.005,
        "tune_router": False, "tune_steps": 30,
    }  # fmt: skip
    assert body["anchor"] is None and body["contract"]["anchor_sha256"] is None
    assert body["contract"]["max_rank"] == 64 and "q_proj" in body["contract"]["target_modules"]
    encoder = BaseModel.objects.create(name="some/encoder", hidden_size=8, num_layers=1,
                                       intermediate_size=16)  # fmt: skip
    # the name before 0.2 is still taken
    wrong = client.post("/api/mixtures/", {"slug": "bad", "name": "Bad", "task_type": "causal-lm",
                        "base_model": encoder.name}, format="json")  # fmt: skip
    assert wrong.status_code == 400 and "serves text classification" in str(wrong.json()["kind"])
    bad_routing = client.patch("/api/mixtures/my-lm/", {"routing": {"lm": {"router": "magic"}}},
                               format="json")  # fmt: skip
    assert bad_routing.status_code == 400 and "routing.lm.router" in str(bad_routing.json())
    not_lm = client.patch("/api/mixtures/my-lm/", {"routing": {"classifier": {}}}, format="json")
    assert "routing.classifier is for classification" in str(not_lm.json()), not_lm.json()


def test_a_language_model_domain_takes_text_and_no_labels(charlie, lm_mixture, tmp_path):
    client = api_client(charlie)
    domain = lm_mixture.domains.get(name="weather")
    text = tmp_path / "notes.txt"
    text.write_text("\n\n".join(lm_texts("weather", 60, words=60, seed=9)))
    with open(text, "rb") as f:
        answer = client.post(f"/api/domains/{domain.pk}/data/", {"file": f}, format="multipart")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["router_count"] + body["eval_count"] == 60 and body["labels"] == []
    labelled = client.patch(f"/api/domains/{domain.pk}/", {"labels": ["a", "b"]}, format="json")
    assert labelled.status_code == 400 and "has no labels" in str(labelled.json())
    csv = tmp_path / "rows.csv"
    csv.write_text("text,label\nhello,a\n")
    with open(csv, "rb") as f:
        refused = client.post(f"/api/domains/{domain.pk}/data/", {"file": f}, format="multipart")
    assert refused.status_code == 400 and ".txt or a .jsonl" in str(refused.json())


def test_uploads_are_checked_against_the_language_model_contract_and_queued_for_lm_workers(
    alice, lm_mixture, hub_lm_folder, tmp_path, sent, django_capture_on_commit_callbacks
):
    from devtools.experts import make_head_file
    from tests.hub.test_uploads import post_api

    with django_capture_on_commit_callbacks(execute=True):
        expert = upload_adapter(alice, trained_adapter(tmp_path / "w", hub_lm_folder, "weather"),
                                "weather")  # fmt: skip
    job = Job.objects.get(expert=expert)
    assert sent == [("workers.tasks.validate_expert", {"args": [job.pk], "queue": "lm"})]
    assert (expert.architecture, expert.source) == ("lora", "peft")
    head = make_head_file(tmp_path / "head.safetensors", type("E", (), {"hidden_size": 32,
                          "name": "x"})(), ["a", "b"])  # fmt: skip
    answer = api_client(alice).post(
        "/api/experts/",
        {"mixture": "tiny-lm", "domain": "food", "name": "head", "file": open(head, "rb")},
        format="multipart",
    )
    assert answer.status_code == 400 and "classification expert" in answer.json()["detail"]
    del post_api


def test_the_pages_say_how_to_train_and_show_perplexity(alice, lm_stored):
    mixture_page = client_for(alice).get("/m/tiny-lm/").content.decode()
    assert "python -m routing lm train" in mixture_page
    assert 'task_type="CAUSAL_LM"' in mixture_page and "<th>Rank</th><td>1 to 64" in mixture_page
    page = client_for(alice).get("/m/tiny-lm/v1/").content.decode()
    assert 'id="lm-scores"' in page and "Held-out perplexity" in page
    assert 'id="try-form"' in page and "pipeline(&quot;text-generation&quot;" in page
    # the export's experts' adapter folders are listed, served and in the zip
    nested = re.findall(r'href="(/m/tiny-lm/v1/files/experts/[^"]+/adapter_config\.json)"', page)
    assert len(nested) == 2, page
    adapter = client_for(alice).get(nested[0])
    assert json.loads(b"".join(adapter.streaming_content))["peft_type"] == "LORA"
    archive = client_for(alice).get("/m/tiny-lm/v1/download/")
    names = zipfile.ZipFile(io.BytesIO(b"".join(archive.streaming_content))).namelist()
    assert nested[0].replace("/m/tiny-lm/v1/files/", "tiny-lm-v1/") in names
    board = client_for(alice).get("/m/tiny-lm/leaderboard/").content.decode()
    assert "Perplexity" in board and "lowest first" in board


def test_generating_is_for_logged_in_users_bounded_throttled_and_private(
    alice, bob, lm_stored, settings, sent, django_capture_on_commit_callbacks
):
    url = f"/api/compositions/{lm_stored.pk}/generate/"
    assert api_client().post(url, {"prompt": "rain"}, format="json").status_code == 401
    empty = api_client(alice).post(url, {"prompt": "  "}, format="json")
    assert empty.status_code == 400 and "the prompt is empty" in str(empty.json())
    long = api_client(alice).post(url, {"prompt": "x" * 2001}, format="json")
    assert long.status_code == 400 and "2,000" in str(long.json())
    many = api_client(alice).post(url, {"prompt": "rain", "max_new_tokens": 500}, format="json")
    assert many.status_code == 400 and "max_new_tokens" in str(many.json())
    with django_capture_on_commit_callbacks(execute=True):
        answer = api_client(alice).post(url, {"prompt": "rain storm"}, format="json")
    assert answer.status_code == 202
    job = answer.json()
    assert sent == [("workers.tasks.generate_text", {"args": [job["id"]], "queue": "lm"})]
    assert api_client(alice).get(f"/api/jobs/{job['id']}/").status_code == 200
    assert api_client(bob).get(f"/api/jobs/{job['id']}/").status_code == 404  # alice's prompt
    from experts.services import generation

    generation.generate(job["id"])
    done = api_client(alice).get(f"/api/jobs/{job['id']}/").json()
    assert done["status"] == "succeeded" and isinstance(done["result"]["text"], str)
    assert [name for name, _ in done["result"]["experts"]][0].startswith("weather lora")


def test_generation_is_throttled_per_user(alice, lm_stored, sent, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    rates = {**SimpleRateThrottle.THROTTLE_RATES, "generate": "2/hour"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)  # undone after the test
    url = f"/api/compositions/{lm_stored.pk}/generate/"
    answers = [
        api_client(alice).post(url, {"prompt": "rain"}, format="json").status_code for _ in range(3)
    ]
    assert answers == [202, 202, 429]
    assert Job.objects.filter(action="generate").count() == 2


def test_a_classification_composition_does_not_generate(alice, charlie, mixture, media):
    from experts.models import Composition

    composition = Composition.objects.create(mixture=mixture, version=1, is_current=True)
    answer = api_client(alice).post(f"/api/compositions/{composition.pk}/generate/",
                                    {"prompt": "hello"}, format="json")  # fmt: skip
    assert answer.status_code == 409 and "does not generate" in answer.json()["detail"]


def test_the_prompt_box_works_without_javascript(alice, lm_stored, sent):
    client = client_for(alice)
    page = client.post("/m/tiny-lm/v1/generate/", {"prompt": "cake sugar", "max_new_tokens": "4"})
    assert page.status_code == 302 and "?job=" in page["Location"]
    job = Job.objects.get(action="generate")
    from experts.services import generation

    generation.generate(job.pk)
    shown = client.get(page["Location"]).content.decode()
    assert 'id="try-output"' in shown and "cake sugar" in shown and "Routed to" in shown
    assert Client().get(page["Location"]).status_code == 200  # anyone: no one else's output


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_contributor_tries_a_composition_in_a_browser(live_server, page, alice, lm_stored, sent):
    from experts.services import generation
    from tests.hub.conftest import log_in, shot

    url = live_server.url
    log_in(page, url, "alice", "pw-alice-123")
    page.goto(f"{url}/m/tiny-lm/v1/")
    page.fill("#id_prompt", "rain storm wet cloud")
    page.click("#try-button")
    page.wait_for_function("document.getElementById('try-status').textContent.length > 0")
    job = Job.objects.get(action="generate")
    generation.generate(job.pk)  # what the worker does with the message
    page.wait_for_selector("#try-output", timeout=15000)
    assert page.inner_text("#try-output").startswith("rain storm wet cloud")
    assert "Routed to weather lora" in page.inner_text("#try-experts")
    shot(page, "30-lm-composition-try-it")


def test_a_language_model_composition_is_published_and_loads_from_the_hub(
    lm_stored, hub_server, sent, tmp_path
):
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from experts.services.resources import loaded_composition
    from tests.hub.published import publish_now

    composition, job = publish_now(lm_stored)
    assert (composition.hub_status, job.status) == ("published", "succeeded"), job.error
    # the commit says what the composition scores in its own kind's metric
    (commit,) = hub_server.commits("charlie/tiny-lm")[:1]
    overall = composition.metrics["overall"]["perplexity"]
    assert f"overall held-out perplexity {overall:.3f}" in commit.message, commit.message
    assert "nan" not in commit.message and "accuracy" not in commit.message
    folder = snapshot_download(
        "charlie/tiny-lm", revision="v1", endpoint=hub_server.url, cache_dir=tmp_path / "hf"
    )
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    prompts = ["rain storm wet cloud", "cake sugar honey jam"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    tokens = model.generate(**batch, max_new_tokens=6, do_sample=False)
    downloaded = tokenizer.batch_decode(tokens[:, batch["input_ids"].shape[1] :],
                                        skip_special_tokens=True)  # fmt: skip
    hub = [g.text for g in loaded_composition(composition).generate(prompts, max_new_tokens=6)]
    assert downloaded == hub
    readme = (tmp_path / "hf").rglob("README.md")
    assert any("perplexity" in p.read_text() for p in readme)
