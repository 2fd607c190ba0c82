"""One upload's way through the hub, as it is after the house's second step: the job row
commits with the expert, a process that dies between that commit and the broker's message
loses nothing, and a failed expert is validated again on request. Real workers, Redis
and PostgreSQL; the faults are caused, not mocked."""

import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from experts.models import Expert, Job
from tests.hub.conftest import api_client, status_of, upload
from tests.hub.processes import ROOT, hub_env, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]

DIES_AFTER_THE_COMMIT = """
import os, signal, sys
import django

django.setup()
from django.contrib.auth.models import User

from experts.models import Domain
from experts.services import queueing
from experts.services.uploads import LocalFile, UploadRequest, accept_upload

# the broker is never told: the process dies when the job's message would be sent,
# after the transaction of the expert and its job has committed
queueing.dispatch = lambda job, countdown=0: os.kill(os.getpid(), signal.SIGKILL)
domain = Domain.objects.get(mixture__slug="weather-food", name="weather")
accept_upload(
    User.objects.get(username="alice"),
    UploadRequest(domain.mixture, domain, "dies", "", "mit", LocalFile(sys.argv[1])),
)
print("not reached")
"""


def test_a_process_killed_between_the_commit_and_the_send_loses_no_upload(
    alice, living_mixture, trained_file, workers, tmp_path, media
):
    path = trained_file("weather")
    run = subprocess.run(
        [sys.executable, "-c", DIES_AFTER_THE_COMMIT, str(path)],
        cwd=ROOT,
        env=hub_env(tmp_path, media, DJANGO_SETTINGS_MODULE="hub.settings"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert "not reached" not in run.stdout
    expert = Expert.objects.get(name="dies")
    job = Job.objects.get(expert=expert)
    # both committed together; the message never left
    assert (expert.status, job.action, job.status, job.sent_at) == (
        "uploaded", "validate", "queued", None
    )  # fmt: skip
    # Celery beat's recovery finds it once its grace is over, and a starting worker too
    from experts.services.queueing import recover_jobs

    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    assert recover_jobs()["sent"] == 1
    workers().start()
    wait_for(lambda: status_of(expert) in ("accepted", "rejected"), 120, "a verdict")
    assert status_of(expert) == "accepted"
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)  # two messages, one validation


def test_a_failed_expert_is_validated_again_on_request(
    alice, bob, charlie, living_mixture, trained_file, workers
):
    # a worker whose validations outlast their time limit: the expert really fails
    slow = workers(slow_validation=5, MOECOLLAB_VALIDATION_SOFT_LIMIT="2").start()
    expert = upload(alice, trained_file("weather"), "weather")
    wait_for(lambda: status_of(expert) == "failed", 120, "the expert failed")
    assert "longer than the 2 s limit" in Expert.objects.get(pk=expert.pk).report["problems"][0]
    slow.stop()
    # it still counts against alice's quota; others may not retry it; alice may
    assert api_client(bob).post(f"/api/experts/{expert.pk}/retry/").status_code == 404
    page = Client()
    page.force_login(alice)
    assert 'id="retry-form"' in page.get(f"/experts/{expert.pk}/").content.decode()
    answer = api_client(alice).post(f"/api/experts/{expert.pk}/retry/")
    assert answer.status_code == 202 and answer.json()["action"] == "validate"
    assert status_of(expert) == "uploaded"
    # a second request while it waits changes nothing
    again = api_client(alice).post(f"/api/experts/{expert.pk}/retry/")
    assert again.status_code == 409 and again.json()["code"] == "not_failed"
    workers().start()
    wait_for(lambda: status_of(expert) in ("accepted", "rejected"), 120, "a verdict")
    assert status_of(expert) == "accepted"
    jobs = list(Job.objects.filter(expert=expert).order_by("pk"))
    assert [j.status for j in jobs] == ["failed", "succeeded"]


def test_a_maintainer_retries_a_failed_expert_from_its_page(
    alice, charlie, living_mixture, trained_file, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        expert = upload(alice, trained_file("weather"), "weather")
    Expert.objects.filter(pk=expert.pk).update(status="failed")
    Job.objects.filter(expert=expert).update(status="failed")
    # a failed expert holds its place in its owner's quota until it is judged or retired
    living_mixture.upload_quota = 1
    living_mixture.save()
    with open(trained_file("food"), "rb") as f:
        refused = api_client(alice).post(
            "/api/experts/",
            {"mixture": "weather-food", "domain": "food", "name": "food", "file": f},
            format="multipart",
        )
    assert refused.status_code == 403 and "quota" in refused.json()["detail"]
    maintainer = Client()
    maintainer.force_login(charlie)
    page = maintainer.get(f"/experts/{expert.pk}/").content.decode()
    assert 'id="retry-form"' in page and "counts against its owner's upload quota" in page
    with django_capture_on_commit_callbacks(execute=True):
        answer = maintainer.post(f"/experts/{expert.pk}/retry/")
    assert answer.status_code == 302 and status_of(expert) == "uploaded"
    assert Job.objects.filter(expert=expert, status="queued").count() == 1
    assert [name for name, _ in sent] == ["workers.tasks.validate_expert"] * 2
