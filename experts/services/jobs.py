"""Running a background job: claimed, kept alive, ended, failed (sending: `queueing`).

The `Job` row is the truth; a broker message only wakes a worker up. So:

- A worker claims a job with a lease: it records itself as the job's `owner`
  and keeps `heartbeat_at` fresh from a thread for as long as the job runs. A
  second delivery of a job whose holder is alive does nothing; a job whose
  holder died (its process is gone on this host, or its heartbeat went stale)
  is taken over, up to `MAX_ATTEMPTS` deliveries, then failed.
- `run` is the one runner of every kind of job: it claims the job, keeps its
  lease, and ends it failed, with a message the user can act on, when its body
  raises or runs out of time; what the job held (an expert, a publication) is
  left in a state from which it can be retried.
- Every state change is a compare-and-set, so any message may arrive twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from contextlib import contextmanager
from datetime import timedelta

import psutil
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ..models import Anchor, Composition, Expert, Job

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
FINAL = (Job.Status.SUCCEEDED, Job.Status.FAILED)


def scrub(text: str) -> str:
    """The text with the Hub token replaced: for anything a job stores or logs."""
    token = settings.MOECOLLAB_HF_TOKEN
    return text.replace(token, "[token]") if token else text


# --- who holds a job -------------------------------------------------------------


def _started(process: psutil.Process) -> int:
    """When a process started, in ms: with its pid, it names one process for good."""
    return int(process.create_time() * 1000)


def _process_alive(pid: int, started: int) -> bool:
    """Whether the process that claimed a job runs still: not gone, not a zombie (a
    killed worker's child may wait unreaped), not a newer process with the same pid."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and _started(process) == started
    except psutil.NoSuchProcess:
        return False


def owner_id() -> str:
    """This thread of this process on this host; the process start time tells a
    reused pid from the process that claimed the job."""
    me = psutil.Process()
    return f"{socket.gethostname()}:{me.pid}:{_started(me)}:{threading.get_ident()}"


def holder_alive(job: Job, now=None) -> bool:
    """Whether the worker that claimed a running job may still be working on it."""
    now = now or timezone.now()
    stale = timedelta(seconds=settings.MOECOLLAB_STALE_JOB_SECONDS)
    if job.heartbeat_at is None or job.heartbeat_at < now - stale:
        return False
    try:
        host, pid, started, thread = job.owner.rsplit(":", 3)
        pid, started, thread = int(pid), int(started), int(thread)
    except ValueError:
        return True  # no owner recorded: only the heartbeat can tell
    if host != socket.gethostname():
        return True  # another machine: its heartbeat is all we can see
    if not _process_alive(pid, started):
        return False
    if pid == os.getpid():
        return thread in {t.ident for t in threading.enumerate()}
    return True


# --- claiming, progress, ending ---------------------------------------------------


def job_composition(job: Job) -> Composition:
    """The composition a job works on, with what loading its model needs."""
    return Composition.objects.select_related("mixture__base_model").get(pk=job.composition_id)


def start_job(job_id: int) -> Job | None:
    """Claim a job for this delivery; None when there is nothing (more) to do here."""
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(of=("self",))
            .select_related("expert", "mixture")
            .filter(pk=job_id)
            .first()
        )
        if job is None or job.status in FINAL:
            return None  # a duplicate delivery of a finished (or deleted) job
        if job.status == Job.Status.RUNNING and holder_alive(job):
            return None  # another worker is on it; its lease says it is alive
        if job.attempts >= MAX_ATTEMPTS:
            why = "the worker died or timed out on every attempt"
            end_job(job, Job.Status.FAILED, f"gave up after {job.attempts} attempts", why)
            _release(job, why)
            return None
        now = timezone.now()
        job.status = Job.Status.RUNNING
        job.attempts += 1
        job.owner = owner_id()
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.save(update_fields=["status", "attempts", "owner", "started_at", "heartbeat_at"])
    return job


def _mine(job: Job):
    return Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, owner=job.owner)


def progress(job: Job, percent: int, message: str) -> None:
    _mine(job).update(progress=percent, message=message[:300], heartbeat_at=timezone.now())


@contextmanager
def heartbeat(job: Job, every: float | None = None):
    """Keep the job's lease fresh from a thread while its body runs, so that a long
    step without progress reports is not taken for a dead worker."""
    every = every or settings.MOECOLLAB_HEARTBEAT_SECONDS
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(every):
                try:
                    _mine(job).update(heartbeat_at=timezone.now())
                except Exception:  # a busy database: the next beat tries again
                    log.warning("heartbeat of job %s failed", job.pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-job-{job.pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def claim_for_validation(job: Job, judged, what: str) -> bool:
    """Mark `judged` (an expert or an anchor) validating for `job`. False, and the job ended
    with nothing to do, when it is judged already (a second delivery of the message)."""
    model, status = type(judged), type(judged).Status
    claimed = model.objects.filter(
        pk=judged.pk, status__in=[status.UPLOADED, status.VALIDATING, status.FAILED]
    ).update(status=status.VALIDATING)
    if not claimed:
        judged.refresh_from_db()
        end_job(job, Job.Status.SUCCEEDED, f"nothing to do: the {what} is {judged.status}")
    return bool(claimed)


def end_job(job: Job, status: str, message: str, error: str = "") -> None:
    Job.objects.filter(pk=job.pk).exclude(status__in=FINAL).update(
        status=status,
        message=message[:300],
        error=error,
        finished_at=timezone.now(),
        progress=100 if status == Job.Status.SUCCEEDED else job.progress,
    )


def fail_job(job_id: int, message: str) -> None:
    """End a job as failed (time limit, crash) and release its expert for a retry."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return
    end_job(job, Job.Status.FAILED, message, message)
    _release(job, message)


def _release(job: Job, message: str) -> None:
    """Leave what a failed job worked on in a state a user can retry from."""
    if job.expert_id:
        Expert.objects.filter(pk=job.expert_id, status=Expert.Status.VALIDATING).update(
            status=Expert.Status.FAILED, report={"problems": [message]}
        )
    if job.anchor_id:
        Anchor.objects.filter(pk=job.anchor_id, status=Anchor.Status.VALIDATING).update(
            status=Anchor.Status.FAILED, report={"problems": [message]}
        )
    if job.action == Job.Action.PUBLISH and job.composition_id:
        Composition.objects.filter(
            pk=job.composition_id, hub_status=Composition.Publish.QUEUED
        ).update(hub_status=Composition.Publish.FAILED, hub_error=message)


# --- the runner -------------------------------------------------------------------


def run(job_id: int, body, *, what: str, soft_limit: int):
    """One delivery of a job: claim it (nothing to do when it ended, or when a live worker
    holds it), keep its lease while `body(job)` runs, and end it failed with a message
    when the body raises or passes the time limit. Returns what the body returned."""
    job = start_job(job_id)
    if job is None:
        return None
    with heartbeat(job):
        try:
            return body(job)
        except SoftTimeLimitExceeded:
            fail_job(job.pk, f"{what} took longer than the {soft_limit} s limit")
        except Exception as exc:  # an infrastructure error: the work may be retried
            log.error("%s job %s failed\n%s", what, job.pk, scrub(traceback.format_exc()))
            fail_job(job.pk, scrub(f"{what} failed: {type(exc).__name__}: {exc}"))
    return None
