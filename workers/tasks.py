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

from celery import shared_task, signals
from django.conf import settings

from experts import task_names

log = logging.getLogger(__name__)

COMMON = {"acks_late": True, "reject_on_worker_lost": True}


def limits(soft: int) -> dict:
    """Celery's time limits of a job's task: the service's runner ends the job failed at
    the soft limit; the hard limit, 30 s later, kills what does not stop."""
    return {"soft_time_limit": soft, "time_limit": soft + 30, **COMMON}


# Each task runs one service's job (`experts.services.jobs.run` claims, keeps alive, ends
# and fails it); what comes next is queued by the service itself.


@shared_task(name=task_names.VALIDATE, **limits(settings.MOECOLLAB_VALIDATION_SOFT_LIMIT))
def validate_expert(job_id: int) -> None:
    from experts.services import validation

    validation.validate(job_id)


@shared_task(name=task_names.VALIDATE_ANCHOR, **limits(settings.MOECOLLAB_VALIDATION_SOFT_LIMIT))
def validate_anchor(job_id: int) -> None:
    """Judge a mixture's anchor on every domain's held-out data."""
    from experts.services import anchors

    anchors.validate_anchor(job_id)


@shared_task(name=task_names.RETRAIN, **limits(settings.MOECOLLAB_RETRAIN_SOFT_LIMIT))
def retrain_gate(job_id: int) -> None:
    from experts.services import compositions

    compositions.retrain(job_id)


@shared_task(name=task_names.PUBLISH, **limits(settings.MOECOLLAB_PUBLISH_SOFT_LIMIT))
def publish_composition(job_id: int) -> None:
    """Export and publish a composition; the message carries the job id, never the token."""
    from experts.services import publishing

    publishing.publish(job_id)


@shared_task(name=task_names.EXPORT, **limits(settings.MOECOLLAB_PUBLISH_SOFT_LIMIT))
def export_composition(job_id: int) -> None:
    """Write a composition's download (export folder and zip) that a page asked for."""
    from experts.services import exports

    exports.export(job_id)


@shared_task(name=task_names.GGUF, **limits(settings.MOECOLLAB_PUBLISH_SOFT_LIMIT))
def write_gguf(job_id: int) -> None:
    """Write a composition's GGUF file for llama.cpp that someone asked for."""
    from experts.services import gguf_files

    gguf_files.build_gguf(job_id)


@shared_task(name=task_names.GENERATE, **limits(settings.MOECOLLAB_GENERATE_SOFT_LIMIT))
def generate_text(job_id: int) -> None:
    """Generate from a composition for someone trying it."""
    from experts.services import generation

    generation.generate(job_id)


@shared_task(name=task_names.RECOVER, soft_time_limit=60, time_limit=90, **COMMON)
def recover_jobs() -> dict | None:
    """Requeue jobs whose worker died and send jobs whose message was lost; runs at
    most once per interval however many beat schedulers send it."""
    from experts.services import queueing

    if not queueing.run_once_per("recover_jobs", settings.MOECOLLAB_RECOVER_SECONDS * 0.9):
        return None
    done = queueing.recover_jobs()
    if any(done.values()):
        log.info("recovered jobs: %s", done)
    return done


@signals.worker_ready.connect
def recover_on_start(sender=None, **kwargs) -> None:
    """A worker that starts picks up what a killed worker left: with the embedded broker
    nothing else would, since its messages are gone once fetched."""
    from experts.services import queueing

    try:
        done = queueing.recover_jobs(worker_start=True)
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
