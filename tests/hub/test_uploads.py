"""Expert uploads through the API and the browser: every refusal leaves nothing behind."""

import io
import struct

import pytest
import torch
from django.test import Client

from experts.models import Expert, Job
from tests.hub.conftest import api_client


def stored_files(media):
    return (
        sorted(p.name for p in (media / "experts").glob("*"))
        if (media / "experts").exists()
        else []
    )


def post_api(user, path, domain="weather", **extra):
    with open(path, "rb") as f:
        return api_client(user).post(
            "/api/experts/",
            {"mixture": "weather-food", "domain": domain, "name": "my expert", "file": f, **extra},
            format="multipart",
        )


def test_it_accepts_an_api_upload_and_queues_validation(
    alice, mixture, expert_file, media, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_api(alice, expert_file())
    assert response.status_code == 201, response.content
    expert = Expert.objects.get()
    assert (expert.owner, expert.status, expert.architecture) == (alice, "uploaded", "head")
    assert response.json()["sha256"] == expert.sha256
    files = stored_files(media)
    assert len(files) == 1 and files[0] != "expert.safetensors" and len(files[0]) > 30
    job = Job.objects.get()
    assert (job.action, job.status, job.expert) == ("validate", "queued", expert)
    assert sent == [("workers.tasks.validate_expert", {"args": [job.pk], "queue": "validation"})]


def test_the_file_is_hashed_as_it_is_stored_not_read_again(
    alice, mixture, expert_file, media, sent, monkeypatch
):
    import hashlib

    from experts.services import uploads

    def read_again(path):
        raise AssertionError("the upload read the whole file a second time to hash it")

    monkeypatch.setattr(uploads, "file_sha256", read_again)
    path = expert_file()
    response = post_api(alice, path)
    assert response.status_code == 201, response.content
    assert response.json()["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (media / Expert.objects.get().file.name).read_bytes() == path.read_bytes()


def bad_file(kind, tmp_path, tiny_encoder, expert_file):
    path = tmp_path / "bad.safetensors"
    good = expert_file().read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) - 100])
    elif kind == "not safetensors":
        path.write_bytes(b"hello, this is just text\n" * 10)
    elif kind == "pickle":
        torch.save({"head.out.weight": torch.zeros(2, 16)}, path)
    elif kind == "wrong base model":
        from devtools.experts import make_head_file

        class Other:
            hidden_size = 48
            name = "some/other-model"

        make_head_file(path, Other, ["rainy", "sunny"])
    elif kind == "wrong labels":
        expert_file(labels=["rainy", "snowy"], name="bad.safetensors")
    return path


@pytest.mark.parametrize(
    "kind, words",
    [
        ("truncated", "truncated"),
        ("not safetensors", "not a safetensors file"),
        ("pickle", "not a safetensors file"),
        ("wrong base model", "trained on base model 'some/other-model'"),
        ("wrong labels", "unknown ['snowy']"),
    ],
)
def test_it_refuses_a_bad_file_and_keeps_nothing(
    alice, mixture, expert_file, tmp_path, media, tiny_encoder, sent, kind, words
):
    response = post_api(alice, bad_file(kind, tmp_path, tiny_encoder, expert_file))
    assert response.status_code == 400, response.content
    assert words in response.json()["detail"]
    assert Expert.objects.count() == 0 and Job.objects.count() == 0
    assert stored_files(media) == [] and sent == []


def test_a_duplicate_of_ones_own_upload_is_refused_with_409(
    alice, mixture, expert_file, media, sent
):
    path = expert_file()
    assert post_api(alice, path).status_code == 201
    response = post_api(alice, path)
    assert response.status_code == 409 and "you already uploaded" in response.json()["detail"]
    assert Expert.objects.count() == 1 and len(stored_files(media)) == 1


def test_another_users_pending_upload_of_the_same_file_is_not_revealed(
    alice, bob, mixture, expert_file, media, sent
):
    path = expert_file()
    assert post_api(alice, path).status_code == 201
    response = post_api(bob, path)  # alice's copy is pending: bob must learn nothing of it
    assert response.status_code == 201, response.content
    assert "alice" not in response.content.decode()
    assert Expert.objects.count() == 2 and len(stored_files(media)) == 2


def test_a_file_identical_to_an_accepted_expert_is_refused_with_409(
    alice, bob, mixture, expert_file, media, sent
):
    path = expert_file()
    assert post_api(alice, path).status_code == 201
    Expert.objects.update(status="accepted")  # public now
    response = post_api(bob, path)
    assert response.status_code == 409 and "already in the mixture" in response.json()["detail"]
    assert Expert.objects.count() == 1 and len(stored_files(media)) == 1


def test_the_quota_is_enforced_before_anything_is_stored(alice, mixture, expert_file, media, sent):
    mixture.upload_quota = 1
    mixture.save()
    assert post_api(alice, expert_file(seed=1, name="a.safetensors")).status_code == 201
    response = post_api(alice, expert_file(seed=2, name="b.safetensors"))
    assert response.status_code == 403 and "quota" in response.json()["detail"]
    assert Expert.objects.count() == 1 and len(stored_files(media)) == 1


def test_an_upload_over_the_mixture_cap_is_refused_with_413(
    alice, mixture, expert_file, media, sent
):
    mixture.max_upload_bytes = 1000
    mixture.save()
    response = post_api(alice, expert_file())
    assert response.status_code == 413
    assert Expert.objects.count() == 0 and stored_files(media) == []


def test_a_body_over_the_hub_cap_is_stopped_while_it_streams(alice, mixture, media, settings, sent):
    settings.MOECOLLAB_MAX_UPLOAD_BYTES = 10_000
    big = io.BytesIO(struct.pack("<Q", 10) + b"x" * 50_000)
    big.name = "big.safetensors"
    response = api_client(alice).post(
        "/api/experts/",
        {"mixture": "weather-food", "domain": "weather", "name": "big", "file": big},
        format="multipart",
    )
    assert response.status_code == 413
    assert Expert.objects.count() == 0 and stored_files(media) == []


def test_anonymous_uploads_are_refused(mixture, expert_file, media):
    with open(expert_file(), "rb") as f:
        response = api_client().post(
            "/api/experts/",
            {"mixture": "weather-food", "domain": "weather", "name": "x", "file": f},
            format="multipart",
        )
    assert response.status_code == 401
    assert Expert.objects.count() == 0


def test_stored_uploads_are_rate_limited_without_side_effects(
    alice, mixture, expert_file, media, sent, settings
):
    settings.MOECOLLAB_UPLOADS_PER_HOUR = 2
    codes = [post_api(alice, expert_file(seed=i, name=f"{i}.safetensors")) for i in range(3)]
    assert [r.status_code for r in codes] == [201, 201, 429]
    assert "upload rate reached" in codes[2].json()["detail"]
    assert 3000 < int(codes[2]["Retry-After"]) <= 3601
    assert Expert.objects.count() == 2 and len(stored_files(media)) == 2


def test_refused_uploads_do_not_use_up_the_upload_rate(
    alice, mixture, expert_file, tmp_path, media, sent, settings
):
    settings.MOECOLLAB_UPLOADS_PER_HOUR = 2
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    assert [post_api(alice, bad).status_code for _ in range(5)] == [400] * 5
    good = [post_api(alice, expert_file(seed=i, name=f"{i}.safetensors")) for i in range(2)]
    assert [r.status_code for r in good] == [201, 201]


def test_upload_attempts_have_their_own_generous_throttle(
    alice, mixture, tmp_path, media, sent, monkeypatch
):
    from rest_framework.throttling import SimpleRateThrottle

    rates = {**SimpleRateThrottle.THROTTLE_RATES, "upload_attempts": "3/hour"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)  # undone after the test
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    codes = [post_api(alice, bad).status_code for _ in range(4)]
    assert codes == [400, 400, 400, 429]
    assert Expert.objects.count() == 0


def test_the_browser_form_uploads_and_shows_the_expert(alice, mixture, expert_file, media, sent):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get("/m/weather-food/")
    assert page.status_code == 200 and b'id="upload-form"' in page.content
    token = page.cookies["csrftoken"].value
    with open(expert_file(), "rb") as f:
        response = client.post(
            "/m/weather-food/upload/",
            {
                "csrfmiddlewaretoken": token,
                "domain": mixture.domains.get(name="weather").pk,
                "name": "browser expert",
                "licence": "mit",
                "file": f,
            },
        )
    expert = Expert.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/experts/{expert.pk}/"
    page = client.get(response["Location"])
    assert b"browser expert" in page.content and b"uploaded" in page.content


def test_the_browser_form_enforces_csrf(alice, mixture, expert_file, media):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    with open(expert_file(), "rb") as f:
        response = client.post(
            "/m/weather-food/upload/",
            {
                "domain": mixture.domains.get(name="weather").pk,
                "name": "x",
                "licence": "mit",
                "file": f,
            },
        )
    assert response.status_code == 403
    assert Expert.objects.count() == 0 and stored_files(media) == []


def test_a_browser_upload_error_says_what_is_wrong(alice, mixture, tmp_path, media):
    client = Client()
    client.force_login(alice)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with open(bad, "rb") as f:
        response = client.post(
            "/m/weather-food/upload/",
            {
                "domain": mixture.domains.get(name="weather").pk,
                "name": "x",
                "licence": "mit",
                "file": f,
            },
        )
    assert response.status_code == 400
    assert b"the file breaks the expert contract" in response.content
    assert Expert.objects.count() == 0


def test_a_plain_peft_adapter_uploads_with_its_config(
    alice, mixture, tmp_path, tiny_encoder, media, sent
):
    from devtools.experts import save_plain_peft_adapter

    save_plain_peft_adapter(tmp_path / "peft", tiny_encoder, 2)
    adapter = tmp_path / "peft" / "adapter_model.safetensors"
    with open(tmp_path / "peft" / "adapter_config.json", "rb") as cfg:
        response = post_api(alice, adapter, adapter_config=cfg)
    assert response.status_code == 201, response.content
    assert (response.json()["source"], response.json()["architecture"]) == ("peft", "lora")
    assert Expert.objects.get().adapter_config["r"] == 4


def test_a_peft_adapter_without_its_config_or_with_a_bad_one_is_refused(
    alice, mixture, tmp_path, expert_file, media, sent
):
    from safetensors.torch import save_file

    path = tmp_path / "adapter_model.safetensors"
    save_file({"base_model.model.classifier.weight": torch.zeros(2, 32)}, path, {"format": "pt"})
    response = post_api(alice, path)
    assert response.status_code == 400 and "adapter_config.json" in response.json()["detail"]
    bad = tmp_path / "adapter_config.json"
    bad.write_text("{not json")
    with open(bad, "rb") as cfg:
        response = post_api(alice, path, adapter_config=cfg)
    assert response.status_code == 400
    assert "not valid JSON" in str(response.json())
    assert Expert.objects.count() == 0 and stored_files(media) == []
