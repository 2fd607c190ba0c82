"""Faults caused for real: a Redis of our own stopped and restarted, workers killed,
two beat schedulers at once. Nothing may be lost, stuck or done twice."""

import time

import psutil
import pytest
from django.utils import timezone

from experts.models import Composition, Expert, Job, ScheduledRun
from experts.services.compositions import enqueue_retrain
from experts.services.queueing import recover_jobs
from tests.hub.processes import (
    Browserless,
    RedisServer,
    WebServer,
    Worker,
    upload_over_http,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True)]


def api_upload(web, user, path, domain="weather"):
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=user)
    started = time.monotonic()
    status, content = upload_over_http(web.url, token.key, path, domain)
    return status, content, time.monotonic() - started


def test_an_upload_and_a_retrain_made_while_redis_is_down_are_done_once_it_is_back(
    alice, charlie, living_mixture, trained_file, tmp_path, media
):
    redis = RedisServer(tmp_path).start()
    web = WebServer(tmp_path, media, REDIS_URL=redis.url).start()
    worker = Worker(tmp_path, media, REDIS_URL=redis.url)
    try:
        redis.stop()
        status, content, seconds = api_upload(web, alice, trained_file("weather"))
        print(f"upload with the broker down: HTTP {status} in {seconds:.2f} s")
        assert status == 201, content
        expert = Expert.objects.get()
        job = Job.objects.get(expert=expert)
        assert (job.status, job.sent_at) == ("queued", None)

        maintainer = Browserless(web.url)
        maintainer.log_in("charlie", "pw-charlie-123")  # the cache is down too: fails open
        maintainer.request("GET", "/m/weather-food/")
        status, _ = maintainer.post_form("/m/weather-food/retrain/", {})
        assert status == 302
        retrain = Job.objects.get(action="retrain")
        assert (retrain.status, retrain.sent_at) == ("queued", None)

        redis.start()  # the same port, empty: every message sent before is gone
        worker.start()
        wait_for(
            lambda: Expert.objects.get(pk=expert.pk).status == "accepted", what="the acceptance"
        )
        v1 = wait_for(lambda: Composition.objects.filter(is_current=True).first(), what="v1")
        assert v1.expert_shas == [expert.sha256]
        wait_for(
            lambda: not Job.objects.exclude(status="succeeded").exists(),
            30,
            "every job to succeed",
        )
        assert Job.objects.get(pk=job.pk).attempts == 1
    finally:
        worker.stop()
        web.stop()
        redis.stop()


def test_a_queued_retrain_whose_message_was_lost_does_not_block_the_next(
    living_mixture, sent, django_capture_on_commit_callbacks
):
    lost = Job.objects.create(action="retrain", mixture=living_mixture)  # never sent
    Job.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timezone.timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        again = enqueue_retrain(living_mixture)
    assert again.pk == lost.pk
    assert sent == [("workers.tasks.retrain_gate", {"args": [lost.pk], "queue": "training"})]
    assert Job.objects.get(pk=lost.pk).sent_at is not None


def test_recovery_sends_jobs_never_sent_and_jobs_lost_in_the_broker(living_mixture, sent):
    old = timezone.now() - timezone.timedelta(hours=1)
    never = Job.objects.create(action="retrain", mixture=living_mixture)
    lost = Job.objects.create(action="retrain", mixture=living_mixture, sent_at=old)
    fresh = Job.objects.create(action="retrain", mixture=living_mixture, sent_at=timezone.now())
    just_made = Job.objects.create(action="retrain", mixture=living_mixture)
    Job.objects.filter(pk__in=[never.pk, lost.pk]).update(created_at=old)
    assert recover_jobs()["sent"] == 2
    assert sorted(kw["args"][0] for _, kw in sent) == [never.pk, lost.pk]
    # a starting worker sends every queued job again: its broker may have lost them
    sent.clear()
    assert recover_jobs(worker_start=True)["sent"] == 4
    assert {kw["args"][0] for _, kw in sent} == {never.pk, lost.pk, fresh.pk, just_made.pk}


def test_a_killed_worker_on_the_embedded_broker_runs_its_job_again_soon(
    alice, news_mixture, bbc_expert, tmp_path, media, sent
):
    from tests.hub.conftest import upload_news

    expert = upload_news(alice, bbc_expert)  # queued; no broker message in this process
    embedded = {"REDIS_URL": ""}  # the filesystem broker under the worker's var folder
    first = Worker(tmp_path, media, name="first", **embedded).start()
    second = Worker(tmp_path, media, name="second", **embedded)
    try:
        job = Job.objects.get(expert=expert)
        wait_for(lambda: Job.objects.get(pk=job.pk).status == "running", what="the job to run")
        first.kill()
        killed = time.monotonic()
        second.start()
        ready = time.monotonic() - killed
        wait_for(
            lambda: Job.objects.get(pk=job.pk).attempts == 2, 60, "the job to run again in 60 s"
        )
        print(
            f"embedded broker: the job ran again {time.monotonic() - killed:.1f} s after the "
            f"kill; the new worker took {ready:.1f} s to start"
        )
        wait_for(lambda: Expert.objects.get(pk=expert.pk).status == "accepted", 240, "acceptance")
        job.refresh_from_db()
        assert (job.status, job.attempts) == ("succeeded", 2)
    finally:
        first.stop()
        second.stop()


def test_an_embedded_beat_ends_when_its_worker_is_killed(tmp_path, media):
    worker = Worker(tmp_path, media, beat=True, REDIS_URL="").start()
    children = wait_for(
        lambda: (c := psutil.Process(worker.proc.pid).children()) and len(c) >= 2 and c,
        30,
        "the pool child and the beat process",
    )
    worker.proc.kill()  # SIGKILL the worker alone: nothing of it may run on
    worker.proc.wait(10)
    wait_for(
        lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
        20,
        "the worker's children to end",
    )


def test_two_beat_schedulers_do_not_double_the_recovery_schedule(tmp_path, media):
    every = {"MOECOLLAB_RECOVER_SECONDS": "2"}
    started = time.monotonic()
    workers = [Worker(tmp_path, media, beat=True, name=f"beat{i}", **every) for i in (1, 2)]
    for w in workers:
        w.start()
    time.sleep(12)
    for w in workers:
        w.stop()
    elapsed = time.monotonic() - started
    sent = sum(
        line.count("received")
        for w in workers
        for line in w.log.read_text().splitlines()
        if "workers.tasks.recover_jobs[" in line
    )
    runs = ScheduledRun.objects.get(name="recover_jobs").runs
    print(f"two beats at 2 s for {elapsed:.1f} s: {sent} messages, {runs} recoveries ran")
    assert sent >= elapsed / 2 + 2  # both beats really sent: more than one schedule's worth
    assert 3 <= runs <= elapsed / (2 * 0.9) + 1
