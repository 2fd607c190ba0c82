"""Registration, login, profile and API tokens."""

from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from rest_framework.authtoken.models import Token


def test_a_visitor_registers_and_is_logged_in(db):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/accounts/register/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/accounts/register/",
        {
            "csrfmiddlewaretoken": token,
            "username": "dana",
            "email": "dana@example.org",
            "password1": "a-long-passphrase-42",
            "password2": "a-long-passphrase-42",
        },
    )
    assert response.status_code == 302
    assert User.objects.filter(username="dana").exists()
    assert client.get("/accounts/profile/").status_code == 200


def test_registration_says_what_is_wrong(db, alice):
    response = Client().post(
        "/accounts/register/",
        {"username": "alice", "email": "ALICE@example.org", "password1": "x", "password2": "y"},
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "already exists" in body and "an account with this e-mail address exists" in body
    assert User.objects.count() == 1


def test_login_and_logout(alice):
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 302
    assert client.get("/accounts/profile/").status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/accounts/profile/").status_code == 302


def test_password_reset_sends_an_email(alice):
    response = Client().post("/accounts/password_reset/", {"email": "alice@example.org"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and "alice" in mail.outbox[0].body


def test_a_user_creates_and_revokes_an_api_token(alice):
    client = Client()
    client.force_login(alice)
    client.post("/accounts/token/")
    key = Token.objects.get(user=alice).key
    page = client.get("/accounts/profile/")
    assert key in page.content.decode()
    assert key not in client.get("/accounts/profile/").content.decode()  # shown once
    client.post("/accounts/token/revoke/")
    assert not Token.objects.filter(user=alice).exists()


def test_token_views_need_a_post_and_a_login(alice):
    assert Client().post("/accounts/token/").status_code == 302
    client = Client()
    client.force_login(alice)
    assert client.get("/accounts/token/").status_code == 405
    assert not Token.objects.filter(user=alice).exists()
