"""Downloads from the site: the zip and the files of a composition's export, written by a
worker when missing (never in the request), pruned and written again identically; what
the model card says."""

# ruff: noqa: F811 -- the shared fixtures are imported to be used here

import io
import json
import zipfile

import pytest
from django.test import Client

from experts.models import Composition, Job
from experts.services.publishing import enqueue_publish
from experts.services.storage import export_entries, export_folder
from tests.hub.conftest import api_client
from tests.hub.published import prepared_by_a_worker, stored  # noqa: F401 (fixtures)
from tests.hub.test_experts_access import client_for


def test_without_a_token_the_page_says_so_and_downloads_still_work(stored, settings, charlie, sent):
    settings.MOECOLLAB_HF_TOKEN = ""
    page = client_for(charlie).get("/m/weather-food/v1/").content.decode()
    assert "Publishing is not configured on this hub" in page
    assert "Publish v1" not in page
    assert enqueue_publish(stored) is None and sent == []
    response = api_client(charlie).post(f"/api/compositions/{stored.pk}/publish/")
    assert response.status_code == 409 and "not configured" in response.json()["detail"]

    prepared_by_a_worker(stored, "/m/weather-food/v1/download/")
    response = Client().get("/m/weather-food/v1/download/")
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)  # measured when it was exported
    again = Client().get("/m/weather-food/v1/download/")
    assert b"".join(again.streaming_content) == body  # the same bytes every time
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.testzip() is None
    names = set(archive.namelist())
    assert {"weather-food-v1/config.json", "weather-food-v1/model-base.safetensors",
            "weather-food-v1/model-experts.safetensors"} <= names  # fmt: skip
    config = json.loads(archive.read("weather-food-v1/config.json"))
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_")

    page = Client().get("/m/weather-food/v1/").content.decode()
    assert "/m/weather-food/v1/files/modeling_moecollab.py" in page  # listed once exported
    one = Client().get("/m/weather-food/v1/files/config.json")
    assert json.loads(b"".join(one.streaming_content)) == config
    assert Client().get("/m/weather-food/v1/files/..%2Fconfig.json").status_code == 404
    assert Client().get("/m/weather-food/v1/files/nothing.bin").status_code == 404
    assert 'model="./weather-food-v1"' in page.replace("&quot;", '"')


def only_full(composition) -> set[str]:
    """The stored files that only the full export names (pruning keeps the light one)."""
    from experts.services.shared import blobs_of
    from experts.services.storage import FULL, LIGHT, export_manifest

    return blobs_of(export_manifest(composition, FULL)) - blobs_of(
        export_manifest(composition, LIGHT)
    )


def test_pruned_exports_come_back_identical_on_the_next_download(stored, settings, media):
    from django.core.management import call_command

    prepared_by_a_worker(stored, "/m/weather-food/v1/files/model-experts.safetensors")
    first = Client().get("/m/weather-food/v1/files/model-experts.safetensors")
    weights = b"".join(first.streaming_content)
    assert Client().get("/m/weather-food/v1/download/").status_code == 200
    folder = export_folder(stored)
    call_command("prune_exports", keep=1)  # v1 is current: kept
    assert folder.is_dir()
    Composition.objects.filter(pk=stored.pk).update(is_current=False)
    blobs = media / "blobs" / "sha256"
    stored_files = sorted(p.name for p in blobs.iterdir())
    going = {b.rsplit("/", 1)[1] for b in only_full(stored)}
    assert going and going < set(stored_files)
    out = io.StringIO()
    call_command("prune_exports", keep=0, dry_run=True, stdout=out)  # says, deletes nothing
    assert (f"would remove the exports of 1 compositions and {len(going)} shared files only "
            "they name, freeing") in out.getvalue()  # fmt: skip
    assert folder.is_dir() and sorted(p.name for p in blobs.iterdir()) == stored_files
    freeing = float(out.getvalue().split("freeing ")[1].split(" MB")[0])
    sizes = {e["blob"]: e["size"] for e in export_entries(stored).values()
             if e["blob"].rsplit("/", 1)[1] in going}  # fmt: skip
    assert freeing == round(sum(sizes.values()) / 1e6, 1) > 0
    call_command("prune_exports", keep=0, stdout=out)
    assert "the exports of 1 compositions and 0 shared files" in out.getvalue()
    assert not folder.exists()
    assert sorted(p.name for p in blobs.iterdir()) == stored_files  # within the grace period
    settings.MOECOLLAB_SHARED_GRACE_SECONDS = 0
    call_command("prune_exports", keep=0, stdout=out)  # nothing names them any more
    assert f"and {len(going)} shared files" in out.getvalue()
    assert sorted(p.name for p in blobs.iterdir()) == sorted(set(stored_files) - going)
    prepared_by_a_worker(stored, "/m/weather-food/v1/files/model-experts.safetensors")
    again = Client().get("/m/weather-food/v1/files/model-experts.safetensors")
    assert b"".join(again.streaming_content) == weights


def test_a_card_sends_no_reader_to_a_loopback_address(stored, settings):
    from experts.services.exports import card_info

    settings.MOECOLLAB_SITE_URL = "http://127.0.0.1:8000"  # the default: no public address
    info = card_info(stored)
    assert info.source_url == "" and all(c.url == "" for c in info.contributors)
    settings.MOECOLLAB_SITE_URL = "https://hub.example.org"
    assert card_info(stored).source_url.startswith("https://hub.example.org/m/")


def test_a_card_names_packaged_datasets_and_not_uploaded_file_names(stored):
    from experts.services.exports import card_info

    weather = stored.mixture.domains.get(name="weather")
    weather.source = "upload my-file.csv"
    weather.save()
    assert "weather" not in card_info(stored).datasets
    weather.source = "packaged weather"
    weather.save()
    assert card_info(stored).datasets["weather"] == "packaged weather"


def test_a_missing_export_is_written_by_a_worker_and_never_in_the_request(
    stored, sent, django_capture_on_commit_callbacks
):
    from experts.services import exports
    from experts.services.storage import export_files

    url = "/m/weather-food/v1/download/"
    status_url = "/m/weather-food/v1/download/status.json"
    with django_capture_on_commit_callbacks(execute=True):
        first, second = Client().get(url), Client().get("/m/weather-food/v1/files/config.json")
    assert first.status_code == second.status_code == 202
    assert "Preparing the download" in first.content.decode()
    assert export_files(stored) == []  # the requests loaded no model and wrote nothing
    job = Job.objects.get(action=Job.Action.EXPORT)  # one job for both requests
    assert sent == [("workers.tasks.export_composition", {"args": [job.pk], "queue": "publishing"})]
    waiting = Client().get(status_url).json()
    assert waiting["ready"] is False and waiting["job"]["status"] == "queued"
    exports.export(job.pk)  # what the worker does with the message
    assert Client().get(status_url).json() == {
        "ready": True,
        "job": {"status": "succeeded", "progress": 100, "message": "the download is ready"},
    }
    response = Client().get(url)
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    exports.export(job.pk)  # a second delivery of the finished job does nothing
    assert Job.objects.get(pk=job.pk).attempts == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_download_waits_for_its_export_in_a_browser(live_server, page, stored, sent):
    from experts.services import exports
    from tests.hub.conftest import shot

    page.goto(f"{live_server.url}/m/weather-food/v1/")
    with page.expect_navigation():
        page.click("text=Download (zip)")
    assert "Preparing the download" in page.inner_text("main")
    shot(page, "22-download-preparing")
    ((name, options),) = sent
    assert name == "workers.tasks.export_composition"
    with page.expect_download(timeout=20000) as download:
        exports.export(options["args"][0])  # the worker; the page polls and then downloads
    names = zipfile.ZipFile(download.value.path()).namelist()
    assert "weather-food-v1/config.json" in names


def test_compositions_stored_before_the_storage_manifests_still_load_and_download(
    stored, media, sent
):
    """An upgrade: folders written by an older hub (no manifests) read as before once the
    migration has run."""
    import importlib
    import shutil

    from django.apps import apps

    from experts.services import exports
    from experts.services.archives import folder_entries, zip_chunks
    from experts.services.resources import load_model
    from experts.services.storage import EXPORT_MANIFEST, MANIFEST, export_files, is_stored

    exports.ensure_export(stored)
    folder = media / stored.folder
    (folder / MANIFEST).unlink()
    (folder / EXPORT_MANIFEST).unlink()
    old_zip = b"".join(zip_chunks(folder_entries(folder / "hf", "weather-food-v1")))
    (folder / "weather-food-v1.zip").write_bytes(old_zip)  # an older hub stored its zip
    old = media / "compositions/weather-food/v1"  # where an older hub put version 1
    shutil.move(folder, old)
    Composition.objects.filter(pk=stored.pk).update(folder="compositions/weather-food/v1")
    stored.refresh_from_db()
    assert not is_stored(stored)
    migration = importlib.import_module("experts.migrations.0007_storage_manifests")
    migration.write_manifests(apps, None)
    assert is_stored(stored) and export_files(stored)
    download = Client().get("/m/weather-food/v1/download/")  # the stored zip, as it was
    assert b"".join(download.streaming_content) == old_zip
    response = Client().get("/m/weather-food/v1/files/config.json")
    assert response.status_code == 200 and json.loads(b"".join(response.streaming_content))
    assert load_model(stored).labels[:2] == ["rainy", "sunny"]
