"""Three users (alice owns things, bob is another contributor, charlie maintains) and a mixture."""

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experts.models import BaseModel, Domain, Mixture
from tests.conftest import make_head_file

LABELS = ["rainy", "sunny"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def hub_online(monkeypatch):
    """huggingface_hub may talk to the network (the Hub-compatible test server), whatever
    HF_HUB_OFFLINE said when it was imported."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def sent(monkeypatch):
    """Messages the hub sends to Celery (the worker tests run real workers)."""
    from hub.celery import app

    calls = []
    monkeypatch.setattr(app, "send_task", lambda name, **kw: calls.append((name, kw)))
    return calls


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", "alice@example.org", "pw-alice-123")


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob", "bob@example.org", "pw-bob-123")


@pytest.fixture
def charlie(db):
    return User.objects.create_user("charlie", "charlie@example.org", "pw-charlie-123")


@pytest.fixture
def mixture(db, tiny_encoder, charlie):
    spec = tiny_encoder.spec
    base = BaseModel.objects.create(
        name=spec.name,
        hidden_size=spec.hidden_size,
        num_layers=spec.num_layers,
        intermediate_size=spec.intermediate_size,
    )
    m = Mixture.objects.create(slug="weather-food", name="Weather and food", base_model=base)
    m.maintainers.add(charlie)
    Domain.objects.create(mixture=m, name="weather", labels=LABELS)
    Domain.objects.create(mixture=m, name="food", labels=["salty", "sour", "sweet"])
    return m


@pytest.fixture
def expert_file(tmp_path, tiny_encoder):
    def make(labels=LABELS, seed=0, name="expert.safetensors"):
        return make_head_file(tmp_path / name, tiny_encoder, labels, "weather", seed=seed)

    return make


def api_client(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# --- a real Chromium (Debian's package) driven by Playwright -------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}; ./run test installs it")
    # Playwright's sync API runs an event loop; the live server's ORM calls are safe.
    had = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            yield b
            b.close()
    finally:
        if had is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser):
    context = browser.new_context()
    yield context.new_page()
    context.close()


def log_in(page, url, username, password):
    """Log in through the site's own form and wait for the home page."""
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{url}/")


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
