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
    assert "already exists" in body and "didn" in body  # taken username, passwords differ
    assert "e-mail" not in body.split("<form")[1].split("</form>")[0].split("errorlist")[-1]
    assert User.objects.count() == 1


def register(client, username, email):
    return client.post(
        "/accounts/register/",
        {
            "username": username,
            "email": email,
            "password1": "a-long-passphrase-42",
            "password2": "a-long-passphrase-42",
        },
    )


def test_registration_does_not_confirm_that_an_address_has_an_account(db, alice):
    taken = register(Client(), "eve", "ALICE@example.org")
    fresh = register(Client(), "frank", "frank@example.org")
    assert taken.status_code == fresh.status_code == 302
    assert taken["Location"] == fresh["Location"]
    # the address's owner hears of it; the visitor sees nothing different
    assert [m.to for m in mail.outbox] == [["alice@example.org"]]
    assert "eve" in mail.outbox[0].body


def test_repeated_wrong_passwords_lock_the_account_even_for_the_right_one(alice, settings):
    settings.MOECOLLAB_RATE_LIMITS = {**settings.MOECOLLAB_RATE_LIMITS, "login_per_account": "5/h"}
    codes = [
        Client().post("/accounts/login/", {"username": "alice", "password": f"wrong{i}"})
        for i in range(5)
    ]
    assert [r.status_code for r in codes] == [200] * 5  # the form, with its error
    right = Client().post("/accounts/login/", {"username": "ALICE ", "password": "pw-alice-123"})
    assert right.status_code == 429 and "Too many log-in attempts" in right.content.decode()
    assert int(right["Retry-After"]) > 0
    assert "_auth_user_id" not in right.client.session
    # another account from the same address is not locked by alice's
    bob = User.objects.create_user("bob2", "b@example.org", "pw-bob-123")
    ok = Client().post("/accounts/login/", {"username": bob.username, "password": "pw-bob-123"})
    assert ok.status_code == 302


def test_log_ins_from_one_address_are_limited_across_accounts(alice, settings):
    settings.MOECOLLAB_RATE_LIMITS = {**settings.MOECOLLAB_RATE_LIMITS, "login_per_address": "3/h"}
    client = Client()
    for name in ("u1", "u2", "u3"):
        assert (
            client.post("/accounts/login/", {"username": name, "password": "x"}).status_code == 200
        )
    response = Client().post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert response.status_code == 429


def test_password_resets_are_limited_per_address_and_per_account(alice, settings):
    settings.MOECOLLAB_RATE_LIMITS = {
        **settings.MOECOLLAB_RATE_LIMITS,
        "password_reset_per_account": "2/h",
        "password_reset_per_address": "4/h",
    }
    codes = [
        Client().post("/accounts/password_reset/", {"email": "alice@example.org"}).status_code
        for _ in range(4)
    ]
    assert codes == [302] * 4  # the same answer every time...
    assert len(mail.outbox) == 2  # ...but the address gets no more than its limit of mail
    limited = Client().post("/accounts/password_reset/", {"email": "other@example.org"})
    assert limited.status_code == 429 and "Too many password reset" in limited.content.decode()


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
