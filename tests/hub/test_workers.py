"""Real Celery workers (prefork, in subprocesses) against real Redis and PostgreSQL.

Each test starts its own worker on the test database, sends work the way the
hub does, and waits for the database to show the outcome.
"""

import time

import pytest

from experts.models import Composition, Expert, Job
from tests.hub.conftest import status_of, upload, upload_news
from tests.hub.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


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
    from experts.services.storage import composition_folder
    from routing.kinds.classification.model import MoEClassifier as Routed

    folder = composition_folder(living_mixture.compositions.get(version=2))
    assert Routed.load(folder, device="cpu").labels[:2] == [
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

    from devtools.hubserver import HubServer

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
        job = Job.objects.get(action="publish")
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
    assert Job.objects.filter(action="retrain").count() == 1


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
