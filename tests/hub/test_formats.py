"""The forms a composition downloads in: the light export (experts, router and a config that
names the base: no base weights) beside the full folder, what each is for on the page
and in the API, the default where the base is on the Hub, and why a form is not offered."""

# ruff: noqa: F811 -- the shared fixtures are imported to be used here

import html
import io
import json
import zipfile

import pytest
from django.test import Client

from experts.models import Job
from experts.services import exports
from tests.hub.conftest import api_client
from tests.hub.published import (  # noqa: F401 (fixtures)
    REPO,
    hub_server,
    hubs_own_model,
    our_commits,
    prepared_by_a_worker,
    publish_now,
    stored,
    texts_50,
)


def tensor_names(data: bytes) -> list[str]:
    from safetensors.torch import load

    return list(load(data))


def zip_of(response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.status_code
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def snippet(page: str, name: str) -> str:
    start = page.index(f'id="snippet-{name}">') + len(f'id="snippet-{name}">')
    return html.unescape(page[start : page.index("</code>", start)])


def test_the_light_zip_holds_no_base_weights_and_predicts_like_the_hub(
    stored, tmp_path, monkeypatch, capsys
):
    from routing.light import load_light

    page = Client().get("/m/weather-food/v1/").content.decode()
    assert 'id="format-light"' in page and "written on first download" in page
    assert "llama.cpp runs language models" in page  # a classifier has no GGUF form

    prepared_by_a_worker(stored, "/m/weather-food/v1/download/?format=light")
    light = zip_of(Client().get("/m/weather-food/v1/download/?format=light"))
    full = zip_of(Client().get("/m/weather-food/v1/download/"))  # the default here: full
    top = "weather-food-v1-light/"
    assert {top + n for n in ("moecollab.json", "config.json", "model.safetensors",
                              "README.md")} == set(light.namelist())  # fmt: skip
    meta = json.loads(light.read(top + "moecollab.json"))
    assert meta["kind"] == "classification" and meta["composition"]["version"] == 1
    keys = {k.split(".")[0] for k in tensor_names(light.read(top + "model.safetensors"))}
    assert keys == {"gate", "experts"}  # the experts and the router, no base weights
    assert {k.split(".")[0] for k in tensor_names(
        full.read("weather-food-v1/model-base.safetensors"))} == {"encoder"}  # fmt: skip
    assert sum(i.file_size for i in light.infolist()) < sum(i.file_size for i in full.infolist())

    light.extractall(tmp_path)
    model, hubs = load_light(tmp_path / top), hubs_own_model(stored)
    assert model.predict(texts_50()) == hubs.predict(texts_50())

    answer = api_client().get(f"/api/compositions/{stored.pk}/").json()
    by_name = {f["name"]: f for f in answer["formats"]}
    assert by_name["light"]["ready"] and by_name["light"]["bytes"] > 0
    assert by_name["light"]["url"].startswith("http://testserver/m/weather-food/v1/download/")
    assert by_name["full"]["default"] and not by_name["light"]["default"]
    assert by_name["gguf"]["reason"] and "url" not in by_name["gguf"]
    page = Client().get("/m/weather-food/v1/").content.decode()
    assert "light zip</a> (" in page  # with its size, once written
    response = Client().get("/m/weather-food/v1/download/?format=light")
    (tmp_path / "weather-food-v1-light.zip").write_bytes(b"".join(response.streaming_content))
    monkeypatch.chdir(tmp_path)
    exec(snippet(page, "light"), {})  # the page's light snippet, as a user pastes it
    assert "'label':" in capsys.readouterr().out


def test_an_unknown_format_is_a_clear_400_and_queues_nothing(stored, sent):
    for url in ("/m/weather-food/v1/download/?format=onnx",
                "/m/weather-food/v1/download/status.json?format=onnx"):  # fmt: skip
        response = Client().get(url)
        assert response.status_code == 400
        assert "unknown format 'onnx'" in response.content.decode()
        assert "full, gguf, light" in response.content.decode()
    response = Client().get("/m/weather-food/v1/download/?format=gguf")  # a classifier's
    assert response.status_code == 400 and response.content.decode() == (
        "this composition has no gguf download: llama.cpp runs language models; "
        "a text classification composition has none"
    )
    assert not Job.objects.filter(action__in=("export", "gguf")).exists() and sent == []


def test_where_the_base_is_on_the_hub_the_light_export_is_the_default_download_and_publication(
    stored, hub_server, sent, monkeypatch
):
    monkeypatch.setattr(exports, "on_hub", lambda name: True)
    exports.export_now(stored)  # what the worker does after a retrain
    from experts.services.storage import FULL, LIGHT, download_ready

    assert download_ready(stored, LIGHT) and not download_ready(stored, FULL)  # not stored
    names = zip_of(Client().get("/m/weather-food/v1/download/")).namelist()
    assert "weather-food-v1-light/moecollab.json" in names
    page = Client().get("/m/weather-food/v1/").content.decode()
    light_row = page[page.index('id="format-light"') : page.index('id="format-full"')]
    assert "default" in light_row
    published, job = publish_now(stored)
    assert published.hub_status == "published", job.message
    (commit,) = our_commits(hub_server)
    files = {f for f in hub_server.state.repos[REPO].resolve(commit.oid).files}
    assert "moecollab.json" in files and "modeling_moecollab.py" not in files


@pytest.mark.parametrize("granularity", ["sequence", "token"])
def test_a_language_model_composition_says_which_forms_it_has_and_why_not(granularity):
    from routing.formats import formats
    from routing.kinds import describe

    offered = {f["name"]: f for f in formats(describe("causal-lm"), {"granularity": granularity})}
    assert offered["light"]["reason"] is None and offered["full"]["reason"] is None
    if granularity == "token":
        assert "no remote code" in offered["full"]["engines"][0]
        assert offered["gguf"]["reason"] is None  # written on request: tests/hub/test_gguf.py
    else:
        assert "trust_remote_code=True" in offered["full"]["engines"][0]
        assert "routing per sequence" in offered["gguf"]["reason"]
