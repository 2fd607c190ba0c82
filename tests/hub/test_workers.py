"""Real Celery workers (prefork, in subprocesses) against real Redis and PostgreSQL.

Each test starts its own worker on the test database, sends work the way the
hub does, and waits for the database to show the outcome.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
from django.db import connection

from experts.models import Composition, Expert, Job
from experts.services.domains import import_domain_data
from routing.cache import TensorCache
from routing.data import Split
from routing.workflow import train_expert_file
from tests.conftest import synthetic_domain, synthetic_rows
from tests.hub.conftest import api_client

pytestmark = [pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Worker:
    def __init__(self, tmp_path, media, **env):
        db = connection.settings_dict
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("PYTEST") and k != "HF_HUB_OFFLINE"
            },
            "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": REDIS,
            "MOECOLLAB_MEDIA_ROOT": str(media),
            "MOECOLLAB_CACHE": str(tmp_path / "worker-cache"),
            "MOECOLLAB_VAR_DIR": str(tmp_path / "var"),
            "MOECOLLAB_RETRAIN_COALESCE_SECONDS": "1",
            **env,
        }
        self.log = tmp_path / "worker.log"
        self.proc = None

    def start(self):
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hub",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "1",
                "--queues",
                "default,validation,training,publishing",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: "ready." in self.log.read_text(), 60, "the worker to start")
        return self

    def child(self):
        return wait_for(lambda: psutil.Process(self.proc.pid).children(), 30, "a pool child")[0]

    def kill(self):
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            p.kill()
        self.proc.kill()
        self.proc.wait(30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def workers(tmp_path, media, settings):
    if not settings.REDIS_URL:
        pytest.fail("worker tests need REDIS_URL (./run test sets redis://127.0.0.1:6379/15)")
    redis.Redis.from_url(REDIS).flushdb()
    started = []

    def make(**env):
        w = Worker(tmp_path, media, **env)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop()


@pytest.fixture
def living_mixture(mixture, media):
    for name in ("weather", "food"):
        rows = synthetic_rows(name, 400, seed=7)
        import_domain_data(
            mixture.domains.get(name=name), Split([t for t, _ in rows], [lab for _, lab in rows])
        )
    return mixture


@pytest.fixture
def trained_file(tmp_path, tiny_encoder):
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


def upload(user, path, domain):
    with open(path, "rb") as f:
        response = api_client(user).post(
            "/api/experts/",
            {"mixture": "weather-food", "domain": domain, "name": path.stem, "file": f},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    return Expert.objects.get(pk=response.json()["id"])


def status_of(expert):
    return Expert.objects.get(pk=expert.pk).status


def test_an_upload_is_validated_and_a_composition_appears(
    alice, living_mixture, trained_file, workers
):
    workers().start()
    weather = upload(alice, trained_file("weather"), "weather")
    wait_for(lambda: status_of(weather) == "accepted", what="the weather expert accepted")
    v1 = wait_for(lambda: Composition.objects.filter(is_current=True).first(), what="v1")
    assert v1.version == 1 and v1.expert_shas == [weather.sha256]
    # alone in v1, the expert answers everything: without it nothing is right
    assert v1.contributions[str(weather.pk)]["drop"] == v1.metrics["overall"]["accuracy"]
    food = upload(alice, trained_file("food"), "food")
    wait_for(lambda: status_of(food) == "accepted", what="the food expert accepted")
    v2 = wait_for(lambda: Composition.objects.filter(is_current=True, version=2).first(), what="v2")
    assert v2.expert_shas == [weather.sha256, food.sha256]
    assert set(v2.metrics["domains"]) == {"weather", "food"}
    assert v2.metrics["overall"]["accuracy"] > 0.8
    assert set(v2.contributions) == {str(weather.pk), str(food.pk)}
    job = Job.objects.filter(expert=food).get()
    assert (job.status, job.progress, job.attempts) == ("succeeded", 100, 1)
    assert Expert.objects.get(pk=food.pk).metrics["accuracy"] > 0.9
    from routing.compose import Composition as Routed

    folder = Path(living_mixture.compositions.get(version=2).folder)
    from django.conf import settings

    assert Routed.load(Path(settings.MEDIA_ROOT) / folder, device="cpu").labels[:2] == [
        "rainy",
        "sunny",
    ]


def test_a_useless_expert_is_rejected_with_what_to_fix(alice, living_mixture, expert_file, workers):
    workers().start()
    expert = upload(alice, expert_file(), "weather")  # random weights: chance accuracy
    wait_for(lambda: status_of(expert) in ("rejected", "accepted"), what="a verdict")
    expert.refresh_from_db()
    assert expert.status == "rejected"
    assert "no better than always predicting" in expert.report["problems"][0]
    assert not Composition.objects.exists()


def test_a_mixture_that_publishes_automatically_is_on_the_hub_after_an_upload(
    alice, living_mixture, trained_file, workers, hub_online
):
    from huggingface_hub import HfApi

    from tests.hubserver import HubServer

    token = "hf_worker_secret_0123456789abcdef"
    server = HubServer(tokens={token: "charlie"}).start()
    try:
        living_mixture.publish_automatically = True
        living_mixture.hub_repo_id = "charlie/weather-food"
        living_mixture.save()
        worker = workers(
            MOECOLLAB_HF_TOKEN=token, HF_ENDPOINT=server.url, HF_HUB_DISABLE_XET="1"
        ).start()
        expert = upload(alice, trained_file("weather"), "weather")
        wait_for(lambda: status_of(expert) == "accepted", what="the expert accepted")
        published = wait_for(
            lambda: Composition.objects.filter(hub_status="published").first(),
            what="v1 published",
        )
        assert published.version == 1 and published.hub_repo == "charlie/weather-food"
        refs = HfApi(endpoint=server.url).list_repo_refs("charlie/weather-food")
        assert {t.name: t.target_commit for t in refs.tags} == {"v1": published.hub_commit}
        job = Job.objects.get(kind="publish")
        assert (job.status, job.attempts) == ("succeeded", 1)
        log = worker.log.read_text()
        assert "workers.tasks.publish_composition" in log and token not in log
    finally:
        server.stop()


def test_duplicate_delivery_makes_one_report_and_one_composition(
    alice, living_mixture, trained_file, workers
):
    from hub.celery import app

    expert = upload(alice, trained_file("weather"), "weather")  # no worker yet: it waits
    job = Job.objects.get(expert=expert)
    app.send_task("workers.tasks.validate_expert", args=[job.pk], queue="validation")
    workers().start()
    wait_for(lambda: Composition.objects.exists(), what="a composition")
    time.sleep(3)  # let the second delivery run, if it were to do anything
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 1
    assert Composition.objects.count() == 1
    assert Job.objects.filter(kind="retrain").count() == 1


@pytest.fixture
def news_mixture(db, media, charlie):
    """A mixture on the real MiniLM with BBC data, where validation takes seconds."""
    from experts.models import BaseModel, Domain, Mixture
    from routing.base import DEFAULT_BASE_MODEL
    from routing.data import load_domain

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
    from routing.base import BaseEncoder
    from routing.data import load_domain

    folder = tmp_path_factory.mktemp("bbc-expert")
    data = load_domain("bbc")
    data.train, data.eval = data.train.limited(200), data.eval.limited(20)
    path = folder / "bbc.safetensors"
    train_expert_file(BaseEncoder(device="cpu"), data, path, cache=TensorCache(folder / "c"))
    return path


def upload_news(user, path):
    with open(path, "rb") as f:
        response = api_client(user).post(
            "/api/experts/",
            {"mixture": "news", "domain": "bbc", "name": "bbc head", "file": f},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    return Expert.objects.get(pk=response.json()["id"])


def test_a_validation_over_its_soft_time_limit_ends_failed(
    alice, news_mixture, bbc_expert, workers
):
    expert = upload_news(alice, bbc_expert)
    workers(MOECOLLAB_VALIDATION_SOFT_LIMIT="1").start()
    wait_for(lambda: status_of(expert) == "failed", what="the expert failed")
    job = Job.objects.get(expert=expert)
    assert job.status == "failed" and "longer than the 1 s limit" in job.message
    assert "longer than the 1 s limit" in Expert.objects.get(pk=expert.pk).report["problems"][0]


def test_a_killed_worker_child_still_validates_exactly_once(
    alice, news_mixture, bbc_expert, workers
):
    worker = workers().start()
    expert = upload_news(alice, bbc_expert)
    job = Job.objects.get(expert=expert)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "running", what="the job to run")
    worker.child().kill()
    wait_for(lambda: status_of(expert) == "accepted", 240, what="acceptance after the kill")
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2
    wait_for(lambda: Composition.objects.exists(), 120, what="a composition")
    time.sleep(2)
    assert Composition.objects.count() == 1


def test_a_killed_and_restarted_worker_still_validates_exactly_once(
    alice, news_mixture, bbc_expert, workers
):
    worker = workers(CELERY_VISIBILITY_TIMEOUT="3").start()
    expert = upload_news(alice, bbc_expert)
    job = Job.objects.get(expert=expert)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "running", what="the job to run")
    worker.kill()
    time.sleep(4)  # past the visibility timeout: Redis hands the message out again
    workers(CELERY_VISIBILITY_TIMEOUT="3").start()
    wait_for(lambda: status_of(expert) == "accepted", 240, what="acceptance after a restart")
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2
    wait_for(lambda: Composition.objects.exists(), 120, what="a composition")
    time.sleep(2)
    assert Composition.objects.count() == 1


@pytest.mark.browser
def test_a_browser_upload_becomes_accepted_and_a_composition_appears(
    live_server, page, alice, living_mixture, trained_file, workers
):
    from tests.hub.conftest import log_in, shot

    workers().start()
    log_in(page, live_server.url, "alice", "pw-alice-123")
    page.goto(f"{live_server.url}/m/weather-food/")
    page.select_option("#id_domain", label="weather (rainy, sunny)")
    page.fill("#id_name", "weather head")
    page.set_input_files("#id_file", str(trained_file("weather")))
    page.click("#upload-form button:has-text('Upload')")
    page.wait_for_url(f"{live_server.url}/experts/*/")
    # the expert page polls its status and reloads when the verdict is in
    page.wait_for_selector("#expert-status.accepted", timeout=120_000)
    shot(page, "08-expert-accepted")
    page.goto(f"{live_server.url}/m/weather-food/")
    wait_for(lambda: Composition.objects.filter(is_current=True).exists(), what="v1")
    page.reload()
    assert "Composition v1" in page.inner_text("main")
    assert "accepted" in page.inner_text("#experts")
    shot(page, "09-mixture-with-composition")
