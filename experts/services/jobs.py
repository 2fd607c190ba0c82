"""The life of a background job: sent, claimed, kept alive, ended, recovered.

The `Job` row is the truth; a broker message only wakes a worker up. So:

- Sending never raises into a request. `dispatch` tries the broker briefly and
  records `sent_at` when it took the message; a job whose message never left
  (broker down) or was lost inside the broker is sent again by `recover_jobs`,
  which runs when a worker starts and every minute from Celery beat.
- A worker claims a job with a lease: it records itself as the job's `owner`
  and keeps `heartbeat_at` fresh from a thread for as long as the job runs. A
  second delivery of a job whose holder is alive does nothing; a job whose
  holder died (its process is gone on this host, or its heartbeat went stale)
  is taken over, up to `MAX_ATTEMPTS` deliveries, then failed.
- Every state change is a compare-and-set, so any message may arrive twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from contextlib import contextmanager
from datetime import timedelta

import psutil
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from .. import task_names
from ..models import Composition, Expert, Job, Mixture, ScheduledRun

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
FINAL = (Job.Status.SUCCEEDED, Job.Status.FAILED)

# The task that runs each kind of job (sent by name: see experts.task_names).
TASKS = {
    Job.Kind.VALIDATE: task_names.VALIDATE,
    Job.Kind.RETRAIN: task_names.RETRAIN,
    Job.Kind.PUBLISH: task_names.PUBLISH,
    Job.Kind.EXPORT: task_names.EXPORT,
    Job.Kind.GENERATE: task_names.GENERATE,
}

# A broker that does not answer costs a request at most about this long; the job
# stays queued and `recover_jobs` sends it later.
SEND_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.2,
    "interval_step": 0.3,
    "interval_max": 0.5,
}
# A job created this recently may still be waiting for its own on-commit send.
SEND_GRACE_SECONDS = 10


# --- sending -------------------------------------------------------------------


def dispatch(job: Job, countdown: int = 0) -> bool:
    """Send the job's message; True when the broker took it. Never raises."""
    from celery import current_app

    task = TASKS[job.kind]
    task_type = Mixture.objects.filter(pk=job.mixture_id).values_list("task_type", flat=True)
    queue = task_names.queue_for(task, task_type.first() or "")
    options = {"countdown": countdown} if countdown else {}
    try:
        current_app.send_task(
            task,
            args=[job.pk],
            queue=queue,
            retry=True,
            retry_policy=SEND_RETRY_POLICY,
            **options,
        )
    except Exception as exc:  # the broker is down or refused: the job stays queued
        log.warning("job %s not sent (%s: %s); it will be sent again", job.pk, type(exc), exc)
        return False
    Job.objects.filter(pk=job.pk).update(sent_at=timezone.now())
    return True


def never_sent(job: Job) -> bool:
    """Whether the job's message has not reached the broker, past the moment when its
    own on-commit send should have happened."""
    grace = timezone.now() - timedelta(seconds=SEND_GRACE_SECONDS)
    return job.sent_at is None and job.created_at < grace


def dispatch_on_commit(job: Job, countdown: int = 0) -> None:
    """Send the job's message once the transaction that created it has committed."""
    transaction.on_commit(lambda: dispatch(job, countdown))


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
    if job.kind == Job.Kind.PUBLISH and job.composition_id:
        Composition.objects.filter(
            pk=job.composition_id, hub_status=Composition.Publish.QUEUED
        ).update(hub_status=Composition.Publish.FAILED, hub_error=message)


# --- recovery ------------------------------------------------------------------


def recover_jobs(*, worker_start: bool = False) -> dict[str, int]:
    """Requeue running jobs whose holder died, and send queued jobs whose message
    never reached the broker or was lost there. Returns what was done, by name.

    On a worker's start every queued job is sent again (a broker without
    acknowledgements, like the embedded one, loses what a killed worker had
    fetched); duplicates are harmless, since a delivered job is claimed once.
    """
    now = timezone.now()
    done = {"requeued": 0, "failed": 0, "sent": 0}
    for job in Job.objects.filter(status=Job.Status.RUNNING):
        if holder_alive(job, now):
            continue
        if job.attempts >= MAX_ATTEMPTS:
            fail_job(job.pk, f"the worker stopped answering {job.attempts} times")
            done["failed"] += 1
            continue
        requeued = Job.objects.filter(
            pk=job.pk, status=Job.Status.RUNNING, owner=job.owner, heartbeat_at=job.heartbeat_at
        ).update(status=Job.Status.QUEUED, message="requeued: its worker stopped answering")
        if requeued:
            done["requeued"] += 1
            done["sent"] += dispatch(job)
    if worker_start:
        waiting = Q()  # everything queued: a duplicate costs one lookup, a loss a job
    else:
        resend = timedelta(seconds=settings.MOECOLLAB_RESEND_QUEUED_SECONDS)
        grace = timedelta(seconds=SEND_GRACE_SECONDS)
        waiting = Q(sent_at__isnull=True, created_at__lt=now - grace) | Q(sent_at__lt=now - resend)
    for job in Job.objects.filter(waiting, status=Job.Status.QUEUED).order_by("pk"):
        done["sent"] += dispatch(job)
    return done


def run_once_per(name: str, seconds: float) -> bool:
    """Whether a scheduled task named `name` may run now: at most once per `seconds`
    whatever number of beat schedulers send it (compare-and-set in the database)."""
    now = timezone.now()
    ScheduledRun.objects.get_or_create(name=name)
    due = Q(last_run_at__isnull=True) | Q(last_run_at__lte=now - timedelta(seconds=seconds))
    return bool(
        ScheduledRun.objects.filter(due, name=name).update(last_run_at=now, runs=F("runs") + 1)
    )
