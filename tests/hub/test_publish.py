"""Publishing to a Hub-compatible server with the real huggingface_hub client, loading the
result with transformers, retries and refused tokens."""

# ruff: noqa: F811 -- the shared fixtures are imported to be used here

import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from django.test import Client

from experts.models import Composition, Job
from experts.services import publishing
from tests.hub.conftest import api_client
from tests.hub.published import (  # noqa: F401 (fixtures)
    REPO,
    ROOT,
    TOKEN,
    hub_server,
    hubs_own_model,
    our_commits,
    publish_now,
    store_model,
    stored,
    texts_50,
)
from tests.hub.test_experts_access import client_for


def test_it_publishes_and_the_model_loads_from_the_hub_predicting_like_the_hub(
    stored, hub_server, sent, tmp_path, settings
):
    from huggingface_hub import HfApi, snapshot_download
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    settings.MOECOLLAB_SITE_URL = "https://hub.example.org"  # the card links back to it
    composition, job = publish_now(stored)
    assert job.status == "succeeded", job.error
    assert composition.hub_status == "published" and composition.hub_repo == REPO
    commits = our_commits(hub_server)
    assert [c.oid for c in commits] == [composition.hub_commit]
    assert commits[0].title == "Weather and food: composition v1"
    refs = HfApi(endpoint=hub_server.url).list_repo_refs(REPO)
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": composition.hub_commit}
    assert composition.hub_url == f"{hub_server.url}/{REPO}/tree/v1"
    lfs_puts = [r for r in hub_server.state.requests if r["method"] == "PUT"]
    assert lfs_puts and all("Authorization" not in r["headers"] for r in lfs_puts)

    folder = snapshot_download(REPO, revision="v1", endpoint=hub_server.url, cache_dir=tmp_path)
    assert {"config.json", "model-base.safetensors", "README.md", "modeling_moecollab.py"} <= set(
        os.listdir(folder)
    )
    card = Path(folder, "README.md").read_text()
    assert "| alice | weather | head | mit | 55.0 % | +40.00 |" in card
    assert f"[sky reader]({settings.MOECOLLAB_SITE_URL}/experts/" in card
    assert "license: apache-2.0" in card  # mit + apache-2.0 experts on an apache-2.0 base

    texts = texts_50()
    hub_model = hubs_own_model(stored)
    want, _ = hub_model.predict_proba(texts)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    with torch.no_grad():
        got = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    assert torch.allclose(got, want, atol=1e-5)
    classify = pipeline("text-classification", model=folder, trust_remote_code=True)
    labels = [hub_model.labels[i] for i in want.argmax(-1)]
    assert [r["label"] for r in classify(texts)] == labels
    assert {"rainy", "sunny"} & set(labels) and {"salty", "sour", "sweet"} & set(labels)


def test_a_new_user_loads_it_by_repo_id_in_three_lines(stored, hub_server, sent, tmp_path):
    publish_now(stored)
    code = (
        "from transformers import pipeline\n"
        f"classify = pipeline('text-classification', model='{REPO}', trust_remote_code=True)\n"
        "print(classify('rain storm wet cloud flood'))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTEST"))}
    env.update(HF_ENDPOINT=hub_server.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer = eval(result.stdout.strip().splitlines()[-1])  # [{'label': ..., 'score': ...}]
    want = hubs_own_model(stored).predict(["rain storm wet cloud flood"])[0]
    assert answer[0]["label"] == want["label"]
    assert answer[0]["score"] == pytest.approx(want["score"], abs=1e-5)


def test_two_503s_end_in_one_commit_after_backing_off(stored, hub_server, sent, settings):
    settings.MOECOLLAB_PUBLISH_BACKOFF_SECONDS = 1.5
    hub_server.fail("POST", r"/commit/main$", 503, times=2)
    sleeps = []
    composition, job = publish_now(stored, sleeps)
    assert job.status == "succeeded" and composition.hub_status == "published"
    assert sleeps == [1.5, 3.0]
    assert len(our_commits(hub_server)) == 1
    commit_posts = [r for r in hub_server.state.requests if r["path"].endswith("/commit/main")]
    assert len(commit_posts) == 3


def test_a_response_lost_after_the_commit_does_not_commit_twice(stored, hub_server, sent):
    hub_server.fail("POST", r"/commit/main$", 504, times=1, lost=True)
    composition, job = publish_now(stored)
    assert job.status == "succeeded"
    commits = our_commits(hub_server)
    assert len(commits) == 1 and composition.hub_commit == commits[0].oid


def test_a_retry_after_tagging_only_records_the_publication(stored, hub_server, sent):
    first, _ = publish_now(stored)
    # the worker died after tagging and before recording: the site still says "queued"
    Composition.objects.filter(pk=stored.pk).update(hub_status="none", hub_commit="")
    again, job = publish_now(stored)
    assert again.hub_commit == first.hub_commit and "earlier attempt" in job.message
    assert len(our_commits(hub_server)) == 1


def test_a_duplicate_delivery_of_a_finished_job_does_nothing(stored, hub_server, sent):
    composition, job = publish_now(stored)
    before = len(hub_server.state.requests)
    publishing.publish(job.pk)
    assert len(hub_server.state.requests) == before
    assert Job.objects.get(pk=job.pk).status == "succeeded"


def test_a_refused_token_fails_at_once_with_a_clear_message(
    stored, hub_server, sent, settings, caplog
):
    settings.MOECOLLAB_HF_TOKEN = "hf_wrong_token_" + TOKEN[::-1]
    sleeps = []
    with caplog.at_level(logging.DEBUG):
        composition, job = publish_now(stored, sleeps)
    assert job.status == "failed" and composition.hub_status == "failed"
    assert "refused the token (HTTP 401)" in composition.hub_error
    assert sleeps == [] and REPO not in hub_server.state.repos
    assert len([r for r in hub_server.state.requests if r["method"] == "POST"]) == 1
    page = client_for(stored.mixture.maintainers.get()).get("/m/weather-food/v1/").content
    assert b"refused the token (HTTP 401)" in page and b"Try again" in page
    for text in (caplog.text, composition.hub_error, job.message, job.error):
        assert settings.MOECOLLAB_HF_TOKEN not in text


def test_the_token_is_in_no_log_line_and_no_task_message(
    stored, hub_server, sent, settings, caplog, django_capture_on_commit_callbacks
):
    hub_server.fail("POST", r"/commit/main$", 502, times=1)
    with caplog.at_level(logging.DEBUG), django_capture_on_commit_callbacks(execute=True):
        composition, job = publish_now(stored)
    assert composition.hub_status == "published"
    assert "answered HTTP 502" in caplog.text  # the retry was logged, without the token
    assert TOKEN not in caplog.text
    assert sent == [
        (
            "workers.tasks.publish_composition",
            {"args": [job.pk], "queue": "publishing"},
        )
    ]
    assert TOKEN not in json.dumps(sent)
    assert TOKEN not in job.message + job.error


def test_only_maintainers_publish_and_the_page_shows_the_snippets(
    stored, hub_server, sent, alice, charlie
):
    assert client_for(alice).post("/m/weather-food/v1/publish/").status_code == 404
    assert api_client(alice).post(f"/api/compositions/{stored.pk}/publish/").status_code == 404
    assert not Job.objects.filter(action="publish").exists()
    response = api_client(charlie).post(f"/api/compositions/{stored.pk}/publish/")
    assert response.status_code == 202 and response.json()["action"] == "publish"
    again = client_for(charlie).post("/m/weather-food/v1/publish/")
    assert again.status_code == 302
    assert Job.objects.filter(action="publish").count() == 1  # the waiting job is not doubled
    publishing.publish(Job.objects.get(action="publish").pk)
    page = Client().get("/m/weather-food/v1/").content.decode().replace("&quot;", '"')
    assert f'model="{REPO}", revision="v1"' in page
    assert f'snapshot_download("{REPO}", revision="v1")' in page
    assert f"export HF_ENDPOINT={hub_server.url}" in page
    api = api_client().get(f"/api/compositions/{stored.pk}/").json()
    assert api["hub_status"] == "published" and api["hub_repo"] == REPO


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_maintainer_publishes_from_the_composition_page_in_a_browser(
    live_server, page, stored, hub_server, sent
):
    from tests.hub.conftest import log_in, shot

    url = live_server.url
    log_in(page, url, "charlie", "pw-charlie-123")
    page.goto(f"{url}/m/weather-food/v1/")
    assert page.title() == "Weather and food v1 · MoECollab Hub"
    assert f"Repository: {REPO}" in page.inner_text("#hub")
    shot(page, "20-composition-unpublished")
    with page.expect_navigation():
        page.click("#hub button:has-text('Publish v1 to the Hub')")
    assert "queued for publishing" in page.inner_text("main")
    assert "publishing" in page.inner_text("#hub")
    ((name, options),) = sent
    publishing.publish(options["args"][0])  # what the worker does with the message
    page.wait_for_selector("#hub:has-text('published to')", timeout=15000)  # live reload
    assert f"published to {REPO}, tag v1" in page.inner_text("#hub")
    assert 'revision="v1"' in page.inner_text("#snippet-transformers")
    shot(page, "21-composition-published")
    with page.expect_download() as download:
        page.click("text=Download (zip)")
    names = zipfile.ZipFile(download.value.path()).namelist()
    assert "weather-food-v1/modeling_moecollab.py" in names


def test_maintainers_set_where_and_when_a_mixture_publishes(mixture, alice, charlie, settings):
    settings.MOECOLLAB_HF_TOKEN = ""
    page = client_for(charlie).get("/m/weather-food/").content.decode()
    assert 'id="hub-settings"' in page and "publishing is not configured on this hub" in page
    assert 'id="hub-settings"' not in client_for(alice).get("/m/weather-food/").content.decode()
    form = {"hub_repo_id": "charlie/weather-food-moe", "publish_automatically": "on"}
    assert client_for(alice).post("/m/weather-food/hub/", form).status_code == 404
    response = client_for(charlie).post("/m/weather-food/hub/", form, follow=True)
    mixture.refresh_from_db()
    assert (mixture.hub_repo_id, mixture.publish_automatically) == (
        "charlie/weather-food-moe",
        True,
    )
    assert "Hub publishing settings saved." in response.content.decode()
    for bad in ("no slash", "a/b/c", "charlie/bad name!", "charlie/--double"):
        response = client_for(charlie).post(
            "/m/weather-food/hub/", {"hub_repo_id": bad}, follow=True
        )
        assert "Nothing saved:" in response.content.decode(), bad
        mixture.refresh_from_db()
        assert mixture.hub_repo_id == "charlie/weather-food-moe" and mixture.publish_automatically


def test_each_version_is_its_own_commit_and_tag(stored, hub_server, sent, settings, tmp_path):
    from huggingface_hub import snapshot_download

    routed = hubs_own_model(stored)
    routed.gate.config.top_k = 2  # v2: the same experts, routed dense
    store_model(routed, "compositions/weather-food/v2")
    v2 = Composition.objects.create(
        mixture=stored.mixture,
        version=2,
        expert_shas=stored.expert_shas,
        folder="compositions/weather-food/v2",
        metrics=stored.metrics,
        contributions=stored.contributions,
    )
    v2.experts.set(stored.experts.all())
    first, _ = publish_now(stored)
    second, _ = publish_now(v2)
    assert [c.title for c in our_commits(hub_server)] == [
        "Weather and food: composition v2",
        "Weather and food: composition v1",
    ]
    assert first.hub_commit != second.hub_commit
    tops = {}
    for tag in ("v1", "v2", "main"):
        folder = snapshot_download(REPO, revision=tag, endpoint=hub_server.url, cache_dir=tmp_path)
        tops[tag] = json.loads(Path(folder, "config.json").read_text())["gate"]["top_k"]
    assert tops == {"v1": 1, "v2": 2, "main": 2}


def test_new_repositories_are_private_when_configured(stored, hub_server, sent, settings):
    settings.MOECOLLAB_HF_PRIVATE = True
    composition, _ = publish_now(stored)
    assert composition.hub_status == "published"
    assert hub_server.state.repos[REPO].private
