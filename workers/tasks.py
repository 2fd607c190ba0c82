"""Celery tasks: thin wrappers around `experts.services.engine`.

Every task is acknowledged late and rejected (so redelivered) when its worker
process dies; the engine's compare-and-set state makes redelivery harmless,
and its attempt counter stops a job that keeps killing workers.
"""

from __future__ import annotations

import logging
import traceback

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

log = logging.getLogger(__name__)

COMMON = {"acks_late": True, "reject_on_worker_lost": True}


def _run_job(job_id: int, what: str, soft_limit: int, body) -> None:
    """Run a job's body; a time limit or a crash ends the job failed with a message
    (the expert or composition it held can be retried), with the Hub token scrubbed."""
    from experts.services import engine
    from experts.services.publish import scrub

    try:
        body()
    except SoftTimeLimitExceeded:
        engine.fail_job(job_id, f"{what} took longer than the {soft_limit} s limit")
    except Exception as exc:  # an infrastructure error: the work may be retried
        log.error("%s job %s failed\n%s", what, job_id, scrub(traceback.format_exc()))
        engine.fail_job(job_id, scrub(f"{what} failed: {type(exc).__name__}: {exc}"))


@shared_task(
    name="workers.tasks.validate_expert",
    soft_time_limit=settings.MOECOLLAB_VALIDATION_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_VALIDATION_SOFT_LIMIT + 30,
    **COMMON,
)
def validate_expert(job_id: int) -> None:
    from experts.services import engine
    from experts.tasks_api import enqueue_retrain

    _run_job(
        job_id,
        "validation",
        settings.MOECOLLAB_VALIDATION_SOFT_LIMIT,
        lambda: engine.validate(job_id, enqueue_retrain=enqueue_retrain),
    )


@shared_task(
    name="workers.tasks.retrain_gate",
    soft_time_limit=settings.MOECOLLAB_RETRAIN_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_RETRAIN_SOFT_LIMIT + 30,
    **COMMON,
)
def retrain_gate(job_id: int) -> None:
    from experts.services import engine
    from experts.tasks_api import enqueue_publish

    _run_job(
        job_id,
        "retraining",
        settings.MOECOLLAB_RETRAIN_SOFT_LIMIT,
        lambda: engine.retrain(job_id, enqueue_publish=enqueue_publish),
    )


@shared_task(
    name="workers.tasks.publish_composition",
    soft_time_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT + 30,
    **COMMON,
)
def publish_composition(job_id: int) -> None:
    """Export and publish a composition; the message carries the job id, never the token."""
    from experts.services import publish

    _run_job(
        job_id,
        "publishing",
        settings.MOECOLLAB_PUBLISH_SOFT_LIMIT,
        lambda: publish.publish(job_id),
    )


@shared_task(name="workers.tasks.reap_stale_jobs", soft_time_limit=60, time_limit=90, **COMMON)
def reap_stale_jobs() -> int:
    from experts.tasks_api import reap_stale_jobs as reap

    return reap()
