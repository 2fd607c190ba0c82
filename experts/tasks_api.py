"""Enqueueing background work: a Job row, then a Celery message after commit.

Task bodies live in `workers/`; this module only names them, so the web
process never imports the worker's heavy dependencies.
"""

from __future__ import annotations

from django.db import transaction

from .models import Expert, Job

VALIDATE_TASK = "workers.tasks.validate_expert"


def enqueue_validation(expert: Expert) -> Job:
    """Record a queued validation job and send its message once the job row is committed."""
    from hub.celery import app

    job = Job.objects.create(
        kind=Job.Kind.VALIDATE,
        mixture_id=expert.mixture_id,
        expert=expert,
        message="waiting for a worker",
    )
    transaction.on_commit(lambda: app.send_task(VALIDATE_TASK, args=[job.pk], queue="validation"))
    return job
