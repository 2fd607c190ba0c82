"""Hostile uploads through the API and the browser form: a clear 4xx, never a 500,
and nothing kept."""

import struct

import pytest
from django.test import Client

from experts.models import Expert, Job
from tests.hub.conftest import api_client

MIB = 1024 * 1024


def stored(media):
    return list((media / "experts").glob("*")) if (media / "experts").exists() else []


def header_file(tmp_path, text: str, data: bytes = b"") -> object:
    raw = text.encode()
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def post_both(client_api, client_form, mixture, path):
    """The same file through the API and through the browser form."""
    with open(path, "rb") as f:
        api = client_api.post(
            "/api/experts/",
            {"mixture": mixture.slug, "domain": "weather", "name": "x", "file": f},
            format="multipart",
        )
    with open(path, "rb") as f:
        form = client_form.post(
            f"/m/{mixture.slug}/upload/",
            {
                "domain": mixture.domains.get(name="weather").pk,
                "name": "x",
                "licence": "mit",
                "file": f,
            },
        )
    return api, form


@pytest.fixture
def clients(alice):
    form = Client(raise_request_exception=False)
    form.force_login(alice)
    return api_client(alice), form


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"w": {"dtype": "F32", "shape": [' + "7" * 5000 + '], "data_offsets": [0, 4]}}',
         "5,000 digits"),
        ("[" * 200_000, "nests too deeply"),
        ('{"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}', "dtype"),
    ],
)  # fmt: skip
def test_a_hostile_header_is_a_400_that_says_why(
    clients, mixture, tmp_path, media, sent, text, words
):
    api, form = post_both(*clients, mixture, header_file(tmp_path, text))
    assert api.status_code == 400 and words in api.json()["detail"]
    assert form.status_code == 400 and words in form.content.decode()
    assert Expert.objects.count() == 0 and Job.objects.count() == 0 and stored(media) == []


def test_a_hostile_adapter_config_is_a_400(clients, mixture, tmp_path, media, sent):
    path = header_file(tmp_path, '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}')
    config = tmp_path / "adapter_config.json"
    for hostile in ("[" * 200_000, '{"r": ' + "9" * 5000 + "}"):
        config.write_text(hostile)
        with open(path, "rb") as f, open(config, "rb") as c:
            response = clients[0].post(
                "/api/experts/",
                {"mixture": "weather-food", "domain": "weather", "name": "x", "file": f,
                 "adapter_config": c},
                format="multipart",
            )  # fmt: skip
        assert response.status_code == 400, response.content
        assert "adapter_config.json" in str(response.json())
    assert Expert.objects.count() == 0 and stored(media) == []


@pytest.mark.parametrize("size", [3 * MIB, MIB + 10_000], ids=["declared-far-over", "just-over"])
def test_a_body_over_the_hub_cap_is_a_413_with_one_message(
    clients, mixture, tmp_path, media, settings, sent, size
):
    settings.MOECOLLAB_MAX_UPLOAD_BYTES = MIB
    path = header_file(tmp_path, '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}')
    path.write_bytes(path.read_bytes() + b"\0" * size)
    api, form = post_both(*clients, mixture, path)
    message = "the file is larger than this hub accepts (at most 1,048,576 bytes)"
    assert api.status_code == 413 and api.json()["detail"] == message
    assert form.status_code == 413 and message in form.content.decode()
    assert "This field is required" not in form.content.decode()
    assert Expert.objects.count() == 0 and stored(media) == []
