"""Hostile uploads through the API and the browser form: a clear 4xx, never a 500,
and nothing kept."""

# ruff: noqa: F811 -- the language-model fixtures are imported to be used here

import struct

import pytest
from django.test import Client

from experts.models import Domain, Expert, Job
from tests.hub.conftest import api_client
from tests.hub.lm_mixture import hub_lm_folder, lm_mixture  # noqa: F401 (fixtures)

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


# --- a maintainer's domain data: hostile files get a 400 that says why, nothing is kept ----


def post_domain_data(client, domain, name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile(name, data)
    return client.post(f"/api/domains/{domain.pk}/data/", {"file": upload}, format="multipart")


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "name, data, words",
    [
        ("rows.jsonl", b'{"text": "x", "label": "a"}\n' + NESTED + b"\n",
         "line 2: invalid JSON (it nests too deeply)"),
        ("rows.csv", b"text,label\nx,a\n" + b"y" * 5_000_000 + b",b\n",
         "line 3: a field is longer than 131,072 characters"),
        ("rows.csv", b"text,label\n" + b"".join(b"t %d,l %d\n" % (i, i) for i in range(200_000)),
         "200,000 examples; a domain takes at most 100,000"),
        ("rows.csv", b"text,label\n" + b"".join(b"t %d,l %d\n" % (i, i) for i in range(1_200)),
         "1,200 distinct labels; a domain has at most 1,000"),
    ],
    ids=["nested-jsonl", "5mb-csv-field", "200000-rows-and-labels", "1200-labels"],
)  # fmt: skip
def test_hostile_domain_data_is_a_400_that_says_why(charlie, mixture, name, data, words):
    domain = mixture.domains.get(name="weather")
    before = (domain.router_count, domain.eval_count, list(domain.labels))
    answer = post_domain_data(api_client(charlie), domain, name, data)
    assert answer.status_code == 400, answer.content[:300]
    assert words in str(answer.json()["file"])
    domain.refresh_from_db()
    assert (domain.router_count, domain.eval_count, list(domain.labels)) == before


def test_hostile_text_data_of_a_language_model_mixture_is_a_400(charlie, lm_mixture):
    domain = lm_mixture.domains.get(name="weather")
    answer = post_domain_data(api_client(charlie), domain, "notes.jsonl", NESTED + b"\n")
    assert answer.status_code == 400 and "nests too deeply" in str(answer.json()["file"])


def test_an_oversize_domain_file_is_a_413_on_the_site_as_on_the_api(
    charlie, mixture, settings, tmp_path
):
    settings.MOECOLLAB_MAX_UPLOAD_BYTES = MIB
    domain = mixture.domains.get(name="weather")
    data = b"text,label\n" + b"x,a\n" * (MIB // 4 + 1000)
    message = "the file is larger than this hub accepts (at most 1,048,576 bytes)"
    api = post_domain_data(api_client(charlie), domain, "rows.csv", data)
    assert api.status_code == 413 and api.json()["detail"] == message
    form = Client(raise_request_exception=False)
    form.force_login(charlie)
    path = tmp_path / "rows.csv"
    path.write_bytes(data)
    with open(path, "rb") as f:
        page = form.post(f"/m/{mixture.slug}/domains/weather/data/", {"file": f})
    assert page.status_code == 413 and message in page.content.decode()
    assert "This field is required" not in page.content.decode()
    assert Domain.objects.get(pk=domain.pk).router_count == 0


def test_a_name_with_a_nul_names_nothing(alice, mixture):
    answer = api_client(alice).post(
        "/api/mixtures/",
        {"slug": "nul", "name": "Nul", "base_model": "some\x00base"},
        format="json",
    )
    assert answer.status_code == 400 and "does not exist" in str(answer.json()["base_model"])


def test_pages_never_list_a_thousand_labels(alice, mixture):
    from experts.models import Domain as D

    labels = [f"label number {i}" for i in range(1000)]
    D.objects.create(mixture=mixture, name="many", labels=labels, labels_declared=True)
    client = Client()
    client.force_login(alice)
    for url in ("/", f"/m/{mixture.slug}/"):
        page = client.get(url).content.decode()
        assert "label number 19" in page and "and 980 more" in page, url
        assert "label number 500" not in page and "label number 999" not in page, url
