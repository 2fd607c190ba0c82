"""Machines that share no disk: the web process and two workers, each with its own empty
folders, on PostgreSQL, Redis and a real S3-compatible bucket (SeaweedFS, credentials
required). Uploads land in the bucket, workers fetch what they need into their own
caches, compositions and exports are stored back, and downloads are pre-signed links."""

import hashlib
import io
import json
import re
import urllib.error
import urllib.request
import uuid
import zipfile

import pytest

from devtools.seaweed import SeaweedS3
from experts.models import Composition, Job
from tests.hub.conftest import status_of
from tests.hub.processes import Browserless, WebServer, Worker, upload_over_http, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as s3:
        yield s3


@pytest.fixture
def bucket(seaweed, settings, monkeypatch):
    """The bucket under a prefix of this test's own; this test process (which makes the
    fixtures' mixture and data) writes there too."""
    from hub.object_storage import default_storage

    env = {**seaweed.hub_env(), "MOECOLLAB_S3_PREFIX": f"t-{uuid.uuid4().hex[:8]}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings.STORAGES = {**settings.STORAGES, "default": default_storage()}
    return env


def machine(tmp_path, name, bucket) -> dict:
    """The environment of one machine: its own empty folders, the shared bucket."""
    root = tmp_path / name
    return {
        **bucket,
        "MOECOLLAB_MEDIA_ROOT": str(root / "media"),
        "MOECOLLAB_CACHE": str(root / "cache"),
        "MOECOLLAB_VAR_DIR": str(root / "var"),
    }


def files_under(folder):
    """Files a process left in a folder (none when it never made the folder)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def download(web, path):
    """A download as a browser makes it: the hub checks, then sends it to the store."""
    status, _ = Browserless(web.url).request("GET", path)
    assert status == 302, status
    request = urllib.request.Request(web.url + path)
    with urllib.request.build_opener().open(request, timeout=60) as response:
        assert response.url.startswith("http://127.0.0.1") and "Signature" in response.url
        return response.read()


def test_web_and_two_workers_that_share_no_disk(
    bucket, seaweed, alice, living_mixture, trained_file, tmp_path, media
):
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=alice)
    work = "default,training,publishing,lm"
    web = WebServer(tmp_path, media, **machine(tmp_path, "web", bucket))
    a, b = machine(tmp_path, "a", bucket), machine(tmp_path, "b", bucket)
    # machine a's validations wait 5 s after claiming their job: time to kill it in one
    validator = Worker(tmp_path, media, name="a", queues="validation", slow_validation=5, **a)
    trainer = Worker(tmp_path, media, name="b", queues=work, **b)
    started = [web, validator, trainer]
    try:
        for process in started:
            process.start()
        status, body = upload_over_http(web.url, token.key, trained_file("weather"), "weather")
        assert status == 201, body
        weather = living_mixture.experts.get()
        wait_for(lambda: status_of(weather) == "accepted", 180, "the weather expert accepted")
        v1 = wait_for(lambda: Composition.objects.filter(is_current=True).first(), 180, "v1")
        # validated on machine a, retrained on machine b: each ran only its own queue
        assert ran(tmp_path / "a.log") == {"validate_expert"}
        assert "retrain_gate" in ran(tmp_path / "b.log")
        wait_for(lambda: _exported(v1), 120, "the export")
        archive = zipfile.ZipFile(io.BytesIO(streamed(web, "/m/weather-food/v1/download/")))
        config = json.loads(archive.read("weather-food-v1/config.json"))
        assert config["architectures"] and "weather" in json.dumps(config)
        expert_bytes = download(web, f"/experts/{weather.pk}/download/")
        assert hashlib.sha256(expert_bytes).hexdigest() == weather.sha256

        keys = seaweed.keys()
        prefix = bucket["MOECOLLAB_S3_PREFIX"]
        assert any(k.startswith(f"{prefix}/experts/") for k in keys)
        assert f"{prefix}/{v1.folder}/files.json" in keys
        assert f"{prefix}/{v1.folder}/export.json" in keys

        # machine a dies in the middle of a validation; machine b takes its queue too
        food = upload_via(web, token, trained_file("food"), "food", living_mixture)
        job = Job.objects.get(expert=food, action="validate")
        wait_for(lambda: Job.objects.get(pk=job.pk).status == "running", 120, "the job to run")
        validator.kill()
        trainer.stop()
        trainer = Worker(tmp_path, media, name="b2", CELERY_VISIBILITY_TIMEOUT="3", **b)
        started.append(trainer.start())
        wait_for(lambda: status_of(food) == "accepted", 240, "the food expert accepted")
        job.refresh_from_db()
        assert job.status == "succeeded" and job.attempts == 2
        v2 = wait_for(lambda: Composition.objects.filter(is_current=True, version=2).first(),
                      180, "v2")  # fmt: skip
        assert v2.expert_shas == [weather.sha256, food.sha256]
        wait_for(lambda: _exported(v2), 120, "the export of v2")
        assert zipfile.ZipFile(io.BytesIO(streamed(web, "/m/weather-food/v2/download/")))
        # the files v1 and v2 have in common (the tokenizer, the code) are stored once
        one, two = (_blobs(v) for v in (v1, v2))
        assert one & two and {f"{prefix}/{b}" for b in one | two} <= set(seaweed.keys())
        assert not any(k.startswith(f"{prefix}/{v2.folder}/hf/") for k in seaweed.keys())
    finally:
        for process in started:
            process.stop()
    # nothing went to any machine's media folder: every stored file is in the bucket
    for folder in (tmp_path / "web" / "media", tmp_path / "a" / "media",
                   tmp_path / "b" / "media", media):  # fmt: skip
        assert files_under(folder) == [], folder
    # each worker fetched into its own cache what it needed
    assert any((tmp_path / "a" / "cache" / "blobs").iterdir())
    assert any(p.name.startswith("folder-") for p in (tmp_path / "b" / "cache" / "blobs").iterdir())


def streamed(web, path):
    """A zip download: assembled by the web process from the bucket's files as it goes."""
    with urllib.request.urlopen(web.url + path, timeout=120) as response:
        body = response.read()
        assert response.status == 200 and int(response.headers["Content-Length"]) == len(body)
    return body


def _blobs(composition) -> set:
    from experts.services.storage import export_manifest

    return {e["blob"] for e in export_manifest(composition)["files"].values()}


def ran(log) -> set[str]:
    """The tasks a worker received, from its log."""
    return set(re.findall(r"Task workers\.tasks\.(\w+)\[[^\]]+\] received", log.read_text()))


def _exported(composition) -> bool:
    from experts.services.storage import download_ready

    return download_ready(composition)


def upload_via(web, token, path, domain, mixture):
    status, body = upload_over_http(web.url, token.key, path, domain)
    assert status == 201, body
    return mixture.experts.get(domain__name=domain)


def test_stored_files_are_private_and_downloads_are_links_for_whoever_may_see_them(
    bucket, seaweed, alice, bob, mixture, expert_file, settings
):
    from django.test import Client

    from tests.hub.test_experts_access import make_expert

    expert = make_expert(alice, mixture, expert_file)  # uploaded, not yet public
    key = f"{bucket['MOECOLLAB_S3_PREFIX']}/{expert.file.name}"
    assert key in seaweed.keys()
    anonymous = urllib.request.Request(f"{seaweed.url}/{seaweed.bucket}/{key}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=10)
    assert refused.value.code == 403  # no object is readable without a signature

    url = f"/experts/{expert.pk}/download/"
    stranger = Client()
    stranger.force_login(bob)
    assert stranger.get(url).status_code == 404  # the hub checks before it links
    owner = Client()
    owner.force_login(alice)
    response = owner.get(url)
    assert response.status_code == 302 and response["Cache-Control"] == "private, no-store"
    with urllib.request.urlopen(response["Location"], timeout=10) as linked:
        assert "attachment" in linked.headers["Content-Disposition"]
        assert hashlib.sha256(linked.read()).hexdigest() == expert.sha256

    settings.MOECOLLAB_REDIRECT_DOWNLOADS = False  # a store the users cannot reach
    streamed = owner.get(url)
    assert streamed.status_code == 200
    assert hashlib.sha256(b"".join(streamed.streaming_content)).hexdigest() == expert.sha256


def test_the_health_check_names_a_bucket_that_refuses_the_hub(bucket, settings, client):
    assert client.get("/health/").json()["checks"]["storage"]["ok"] is True
    wrong = {**settings.STORAGES["default"]}
    wrong["OPTIONS"] = {**wrong["OPTIONS"], "secret_key": "not-the-secret"}
    settings.STORAGES = {**settings.STORAGES, "default": wrong}
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == {
        "ok": False, "error": "ClientError", "ms": response.json()["checks"]["storage"]["ms"]
    }  # fmt: skip
