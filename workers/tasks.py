"""Celery tasks: thin wrappers around `experts.services.engine`.

Every task is acknowledged late and rejected (so redelivered) when its worker
process dies; the engine's compare-and-set state makes redelivery harmless,
and its attempt counter stops a job that keeps killing workers.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

log = logging.getLogger(__name__)

COMMON = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(
    name="workers.tasks.validate_expert",
    soft_time_limit=settings.MOECOLLAB_VALIDATION_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_VALIDATION_SOFT_LIMIT + 30,
    **COMMON,
)
def validate_expert(job_id: int) -> None:
    from experts.services import engine
    from experts.tasks_api import enqueue_retrain

    try:
        engine.validate(job_id, enqueue_retrain=enqueue_retrain)
    except SoftTimeLimitExceeded:
        engine.fail_job(
            job_id,
            f"validation took longer than the {settings.MOECOLLAB_VALIDATION_SOFT_LIMIT} s limit",
        )
    except Exception as exc:  # an infrastructure error: the expert may be retried
        log.exception("validation job %s failed", job_id)
        engine.fail_job(job_id, f"validation failed: {type(exc).__name__}: {exc}")


@shared_task(
    name="workers.tasks.retrain_gate",
    soft_time_limit=settings.MOECOLLAB_RETRAIN_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_RETRAIN_SOFT_LIMIT + 30,
    **COMMON,
)
def retrain_gate(job_id: int) -> None:
    from experts.services import engine
    from experts.tasks_api import enqueue_publish

    try:
        engine.retrain(job_id, enqueue_publish=enqueue_publish)
    except SoftTimeLimitExceeded:
        engine.fail_job(
            job_id,
            f"retraining took longer than the {settings.MOECOLLAB_RETRAIN_SOFT_LIMIT} s limit",
        )
    except Exception as exc:
        log.exception("retrain job %s failed", job_id)
        engine.fail_job(job_id, f"retraining failed: {type(exc).__name__}: {exc}")


@shared_task(
    name="workers.tasks.publish_composition",
    soft_time_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT + 30,
    **COMMON,
)
def publish_composition(job_id: int) -> None:
    """Export and publish a composition; the message carries the job id, never the token."""
    from experts.services import engine, publish

    try:
        publish.publish(job_id)
    except SoftTimeLimitExceeded:
        engine.fail_job(
            job_id,
            f"publishing took longer than the {settings.MOECOLLAB_PUBLISH_SOFT_LIMIT} s limit",
        )
    except Exception as exc:
        log.exception("publish job %s failed", job_id)
        engine.fail_job(job_id, publish.scrub(f"publishing failed: {type(exc).__name__}: {exc}"))


@shared_task(name="workers.tasks.reap_stale_jobs", soft_time_limit=60, time_limit=90, **COMMON)
def reap_stale_jobs() -> int:
    from experts.tasks_api import reap_stale_jobs as reap

    return reap()
