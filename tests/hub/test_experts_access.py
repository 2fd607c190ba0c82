"""Who sees and touches an expert: the owner, another user, an anonymous visitor."""

from django.test import Client

from experts.models import Expert
from tests.hub.conftest import api_client


def make_expert(user, mixture, expert_file, status="uploaded", seed=0):
    from experts.services.uploads import LocalFile, UploadRequest, accept_upload

    path = expert_file(seed=seed, name=f"e{seed}.safetensors")
    expert = accept_upload(
        user,
        UploadRequest(
            mixture=mixture,
            domain=mixture.domains.get(name="weather"),
            name=f"expert {seed}",
            description="",
            licence="mit",
            file=LocalFile(path),
        ),
    )
    Expert.objects.filter(pk=expert.pk).update(status=status)
    return Expert.objects.get(pk=expert.pk)


def client_for(user):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_an_unaccepted_expert_is_visible_to_its_owner_and_maintainers_only(
    alice, bob, charlie, mixture, expert_file, media
):
    expert = make_expert(alice, mixture, expert_file)
    assert client_for(alice).get(f"/experts/{expert.pk}/").status_code == 200
    assert client_for(charlie).get(f"/experts/{expert.pk}/").status_code == 200
    assert client_for(bob).get(f"/experts/{expert.pk}/").status_code == 404
    assert client_for(None).get(f"/experts/{expert.pk}/").status_code == 404
    assert api_client(bob).get(f"/api/experts/{expert.pk}/").status_code == 404
    assert api_client(alice).get(f"/api/experts/{expert.pk}/").status_code == 200
    assert [e["id"] for e in api_client(bob).get("/api/experts/").json()["results"]] == []


def test_an_accepted_expert_is_public(alice, bob, mixture, expert_file, media):
    expert = make_expert(alice, mixture, expert_file, status="accepted")
    assert client_for(None).get(f"/experts/{expert.pk}/").status_code == 200
    page = client_for(None).get("/m/weather-food/")
    assert b"expert 0" in page.content


def test_downloads_are_attachments_for_those_who_may_see(alice, bob, mixture, expert_file, media):
    expert = make_expert(alice, mixture, expert_file)
    response = client_for(alice).get(f"/experts/{expert.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert b"".join(response.streaming_content) == expert.file.open("rb").read()
    assert client_for(bob).get(f"/experts/{expert.pk}/download/").status_code == 404


def test_only_the_owner_retires_an_expert(alice, bob, mixture, expert_file, media):
    expert = make_expert(alice, mixture, expert_file, status="accepted")
    assert client_for(bob).post(f"/experts/{expert.pk}/retire/").status_code == 404
    assert api_client(bob).post(f"/api/experts/{expert.pk}/retire/").status_code == 404
    expert.refresh_from_db()
    assert expert.status == "accepted"
    assert client_for(alice).post(f"/experts/{expert.pk}/retire/").status_code == 302
    expert.refresh_from_db()
    assert expert.status == "retired"


def test_retiring_needs_a_post(alice, mixture, expert_file, media):
    expert = make_expert(alice, mixture, expert_file)
    assert client_for(alice).get(f"/experts/{expert.pk}/retire/").status_code == 405
