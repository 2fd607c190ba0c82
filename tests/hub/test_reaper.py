"""Recovery: a running job whose worker died is requeued, or failed when out of attempts."""

from datetime import timedelta

from django.utils import timezone

from experts.models import Expert, Job
from experts.services.queueing import recover_jobs
from tests.hub.test_experts_access import make_expert


def stale_job(mixture, expert, attempts, minutes=30):
    return Job.objects.create(
        action="validate",
        mixture=mixture,
        expert=expert,
        status="running",
        attempts=attempts,
        heartbeat_at=timezone.now() - timedelta(minutes=minutes),
    )


def test_a_stale_job_is_requeued_and_sent_again(alice, mixture, expert_file, media, sent):
    expert = make_expert(alice, mixture, expert_file, status="validating")
    job = stale_job(mixture, expert, attempts=1)
    fresh = stale_job(mixture, expert, attempts=1, minutes=0)
    assert recover_jobs() == {"requeued": 1, "failed": 0, "sent": 1}
    job.refresh_from_db()
    fresh.refresh_from_db()
    assert job.status == "queued" and "stopped answering" in job.message
    assert fresh.status == "running"
    assert sent == [("workers.tasks.validate_expert", {"args": [job.pk], "queue": "validation"})]


def test_a_job_out_of_attempts_fails_and_frees_its_expert(alice, mixture, expert_file, media, sent):
    expert = make_expert(alice, mixture, expert_file, status="validating")
    job = stale_job(mixture, expert, attempts=3)
    assert recover_jobs() == {"requeued": 0, "failed": 1, "sent": 0}
    job.refresh_from_db()
    assert job.status == "failed" and sent == []
    assert Expert.objects.get(pk=expert.pk).status == "failed"
