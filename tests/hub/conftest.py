"""Three users (alice owns things, bob is another contributor, charlie maintains) and a mixture."""

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from devtools.experts import make_head_file
from experts.models import BaseModel, Domain, Mixture

LABELS = ["rainy", "sunny"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture(autouse=True)
def fresh_limits():
    """Rate-limit counters live in the shared cache (Redis in the suite): each test
    starts with none."""
    from django.core.cache import cache

    cache.clear()


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

    def send_task(name, retry=None, retry_policy=None, **kw):
        calls.append((name, kw))

    monkeypatch.setattr(app, "send_task", send_task)
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


# --- mixtures with data, trained experts and workers (the worker and fault tests) ------


@pytest.fixture
def workers(tmp_path, media, settings):
    """Start real prefork workers on the test database and the suite's Redis."""
    import redis

    from tests.hub.processes import REDIS, Worker

    if not settings.REDIS_URL:
        pytest.fail("worker tests need REDIS_URL (./run test sets redis://127.0.0.1:6379/15)")
    redis.Redis.from_url(REDIS).flushdb()
    started = []

    def make(**env):
        w = Worker(tmp_path, media, name=f"worker{len(started) + 1}", **env)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


@pytest.fixture
def living_mixture(mixture, media):
    from devtools.tiny import synthetic_rows
    from experts.services.domains import import_domain_data
    from routing.data import Split

    for name in ("weather", "food"):
        rows = synthetic_rows(name, 400, seed=7)
        import_domain_data(
            mixture.domains.get(name=name), Split([t for t, _ in rows], [lab for _, lab in rows])
        )
    return mixture


@pytest.fixture
def trained_file(tmp_path, tiny_encoder):
    from devtools.tiny import synthetic_domain
    from routing.cache import TensorCache
    from routing.kinds.classification.training import train_expert_file

    cache = TensorCache(tmp_path / "train-cache")

    def make(domain="weather", seed=0):
        path = tmp_path / f"{domain}-{seed}.safetensors"
        train_expert_file(
            tiny_encoder,
            synthetic_domain(domain),
            path,
            cache=cache,
            seed=seed,
            epochs=40,
            hidden=32,
            lr=1e-2,
        )
        return path

    return make


def upload(user, path, domain, mixture="weather-food", name=None):
    from experts.models import Expert

    with open(path, "rb") as f:
        response = api_client(user).post(
            "/api/experts/",
            {"mixture": mixture, "domain": domain, "name": name or path.stem, "file": f},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    return Expert.objects.get(pk=response.json()["id"])


def status_of(expert):
    from experts.models import Expert

    return Expert.objects.get(pk=expert.pk).status


@pytest.fixture
def news_mixture(db, media, charlie):
    """A mixture on the real MiniLM with BBC data, where validation takes seconds."""
    from experts.services.domains import import_domain_data
    from routing.basemodels import DEFAULT_BASE_MODEL
    from routing.data import Split, load_domain

    base = BaseModel.objects.create(
        name=DEFAULT_BASE_MODEL, hidden_size=384, num_layers=6, intermediate_size=1536
    )
    mixture = Mixture.objects.create(slug="news", name="News", base_model=base)
    bbc = load_domain("bbc")
    pool = Split(bbc.router.texts + bbc.eval.texts, bbc.router.labels + bbc.eval.labels)
    import_domain_data(Domain.objects.create(mixture=mixture, name="bbc"), pool.limited(600))
    return mixture


@pytest.fixture(scope="module")
def bbc_expert(tmp_path_factory):
    from routing.cache import TensorCache
    from routing.data import load_domain
    from routing.kinds.classification.encoder import BaseEncoder
    from routing.kinds.classification.training import train_expert_file

    folder = tmp_path_factory.mktemp("bbc-expert")
    data = load_domain("bbc")
    data.train, data.eval = data.train.limited(200), data.eval.limited(20)
    path = folder / "bbc.safetensors"
    train_expert_file(BaseEncoder(device="cpu"), data, path, cache=TensorCache(folder / "c"))
    return path


def upload_news(user, path):
    return upload(user, path, "bbc", mixture="news", name="bbc head")
