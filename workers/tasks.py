"""Celery tasks: thin wrappers around the services in `experts.services`.

Every task is acknowledged late and rejected (so redelivered) when its worker
process dies; a job's lease (`experts.services.jobs`) makes redelivery
harmless, and its attempt counter stops a job that keeps killing workers.
A starting worker, and Celery beat every minute, recover what died or was
never sent.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import traceback

from celery import shared_task, signals
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from experts import task_names

log = logging.getLogger(__name__)

COMMON = {"acks_late": True, "reject_on_worker_lost": True}


def _run_job(job_id: int, what: str, soft_limit: int, body) -> None:
    """Run a job's body; a time limit or a crash ends the job failed with a message
    (the expert or composition it held can be retried), with the Hub token scrubbed."""
    from experts.services.jobs import fail_job
    from experts.services.publishing import scrub

    try:
        body()
    except SoftTimeLimitExceeded:
        fail_job(job_id, f"{what} took longer than the {soft_limit} s limit")
    except Exception as exc:  # an infrastructure error: the work may be retried
        log.error("%s job %s failed\n%s", what, job_id, scrub(traceback.format_exc()))
        fail_job(job_id, scrub(f"{what} failed: {type(exc).__name__}: {exc}"))


@shared_task(
    name=task_names.VALIDATE,
    soft_time_limit=settings.MOECOLLAB_VALIDATION_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_VALIDATION_SOFT_LIMIT + 30,
    **COMMON,
)
def validate_expert(job_id: int) -> None:
    from experts.services import validation
    from experts.tasks_api import enqueue_retrain

    _run_job(
        job_id,
        "validation",
        settings.MOECOLLAB_VALIDATION_SOFT_LIMIT,
        lambda: validation.validate(job_id, enqueue_retrain=enqueue_retrain),
    )


@shared_task(
    name=task_names.RETRAIN,
    soft_time_limit=settings.MOECOLLAB_RETRAIN_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_RETRAIN_SOFT_LIMIT + 30,
    **COMMON,
)
def retrain_gate(job_id: int) -> None:
    from experts.services import compositions
    from experts.tasks_api import enqueue_publish

    _run_job(
        job_id,
        "retraining",
        settings.MOECOLLAB_RETRAIN_SOFT_LIMIT,
        lambda: compositions.retrain(job_id, enqueue_publish=enqueue_publish),
    )


@shared_task(
    name=task_names.PUBLISH,
    soft_time_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT + 30,
    **COMMON,
)
def publish_composition(job_id: int) -> None:
    """Export and publish a composition; the message carries the job id, never the token."""
    from experts.services import publishing

    _run_job(
        job_id,
        "publishing",
        settings.MOECOLLAB_PUBLISH_SOFT_LIMIT,
        lambda: publishing.publish(job_id),
    )


@shared_task(
    name=task_names.EXPORT,
    soft_time_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT + 30,
    **COMMON,
)
def export_composition(job_id: int) -> None:
    """Write a composition's download (export folder and zip) that a page asked for."""
    from experts.services import exports

    _run_job(
        job_id, "exporting", settings.MOECOLLAB_PUBLISH_SOFT_LIMIT, lambda: exports.export(job_id)
    )


@shared_task(
    name=task_names.GENERATE,
    soft_time_limit=settings.MOECOLLAB_GENERATE_SOFT_LIMIT,
    time_limit=settings.MOECOLLAB_GENERATE_SOFT_LIMIT + 30,
    **COMMON,
)
def generate_text(job_id: int) -> None:
    """Generate from a language-model composition for someone trying it."""
    from experts.services import generation

    _run_job(
        job_id,
        "generating",
        settings.MOECOLLAB_GENERATE_SOFT_LIMIT,
        lambda: generation.generate(job_id),
    )


@shared_task(name=task_names.RECOVER, soft_time_limit=60, time_limit=90, **COMMON)
def recover_jobs() -> dict | None:
    """Requeue jobs whose worker died and send jobs whose message was lost; runs at
    most once per interval however many beat schedulers send it."""
    from experts.services import jobs

    if not jobs.run_once_per("recover_jobs", settings.MOECOLLAB_RECOVER_SECONDS * 0.9):
        return None
    done = jobs.recover_jobs()
    if any(done.values()):
        log.info("recovered jobs: %s", done)
    return done


@signals.worker_ready.connect
def recover_on_start(sender=None, **kwargs) -> None:
    """A worker that starts picks up what a killed worker left: with the embedded broker
    nothing else would, since its messages are gone once fetched."""
    from experts.services import jobs

    try:
        done = jobs.recover_jobs(worker_start=True)
    except Exception:  # the worker still starts; beat tries again within a minute
        log.exception("recovering jobs at start failed")
        return
    log.info("recovered jobs at start: %s", done)


PR_SET_PDEATHSIG = 1


@signals.beat_embedded_init.connect
def die_with_the_worker(sender=None, **kwargs) -> None:
    """A beat scheduler embedded in a worker (`--beat`) ends when that worker dies,
    even by SIGKILL, instead of scheduling on alone under PID 1 (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: `./run start` still stops it
        return
    if os.getppid() == 1:  # the worker died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
