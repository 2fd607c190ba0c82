"""Enqueueing background work: a Job row, then a Celery message after commit.

Task bodies live in `workers/`; this module only names them, so the web
process never imports the worker's heavy dependencies.
"""

from __future__ import annotations

from django.db import transaction

from .models import Composition, Expert, Job

VALIDATE_TASK = "workers.tasks.validate_expert"
RETRAIN_TASK = "workers.tasks.retrain_gate"
PUBLISH_TASK = "workers.tasks.publish_composition"


def enqueue_validation(expert: Expert) -> Job:
    """Record a queued validation job and send its message once the job row is committed."""
    job = Job.objects.create(
        kind=Job.Kind.VALIDATE,
        mixture_id=expert.mixture_id,
        expert=expert,
        message="waiting for a worker",
    )
    transaction.on_commit(lambda: _send(job))
    return job


QUEUES = {
    Job.Kind.VALIDATE: ("validation", VALIDATE_TASK),
    Job.Kind.RETRAIN: ("training", RETRAIN_TASK),
    Job.Kind.PUBLISH: ("publishing", PUBLISH_TASK),
}


def _send(job: Job, countdown: int = 0) -> None:
    from hub.celery import app

    queue, task = QUEUES[job.kind]
    options = {"countdown": countdown} if countdown else {}
    app.send_task(task, args=[job.pk], queue=queue, **options)


def enqueue_retrain(mixture) -> Job:
    """Queue one retrain for the mixture, unless one is already waiting (it will see
    every expert accepted before it runs, so accepts close together share a retrain)."""
    from django.conf import settings

    with transaction.atomic():
        waiting = (
            Job.objects.select_for_update()
            .filter(mixture=mixture, kind=Job.Kind.RETRAIN, status=Job.Status.QUEUED)
            .first()
        )
        if waiting is not None:
            return waiting
        job = Job.objects.create(
            kind=Job.Kind.RETRAIN, mixture=mixture, message="waiting for more accepted experts"
        )
        delay = settings.MOECOLLAB_RETRAIN_COALESCE_SECONDS
        transaction.on_commit(lambda: _send(job, countdown=delay))
    return job


def enqueue_publish(composition: Composition) -> Job | None:
    """Queue the composition's publication to the Hub; None when publishing is not
    configured. A publication already waiting or running is returned, not doubled."""
    from .services.publish import hub_configured

    if not hub_configured():
        return None
    with transaction.atomic():
        Composition.objects.select_for_update().get(pk=composition.pk)
        waiting = Job.objects.filter(
            composition_id=composition.pk,
            kind=Job.Kind.PUBLISH,
            status__in=(Job.Status.QUEUED, Job.Status.RUNNING),
        ).first()
        if waiting is not None:
            return waiting
        Composition.objects.filter(pk=composition.pk).update(
            hub_status=Composition.Publish.QUEUED, hub_error=""
        )
        job = Job.objects.create(
            kind=Job.Kind.PUBLISH,
            mixture_id=composition.mixture_id,
            composition_id=composition.pk,
            message="waiting for a publishing worker",
        )
        transaction.on_commit(lambda: _send(job))
    return job


def reap_stale_jobs() -> int:
    """Requeue running jobs whose heartbeat went stale (their worker died), or fail them
    once they have used their attempts; returns how many jobs were touched."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from .services.engine import MAX_ATTEMPTS, fail_job

    cutoff = timezone.now() - timedelta(seconds=settings.MOECOLLAB_STALE_JOB_SECONDS)
    touched = 0
    for job in Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff):
        if job.attempts >= MAX_ATTEMPTS:
            fail_job(job.pk, f"the worker stopped answering {job.attempts} times")
        else:
            requeued = Job.objects.filter(
                pk=job.pk, status=Job.Status.RUNNING, heartbeat_at__lt=cutoff
            ).update(status=Job.Status.QUEUED, message="requeued: its worker stopped answering")
            if requeued:
                _send(job)
        touched += 1
    return touched
