"""Sending jobs to workers: queue a job (its row, then its message once the row is
committed), send its message, and send again what never reached a worker.

- Sending never raises into a request. `dispatch` tries the broker briefly and
  records `sent_at` when it took the message; a job whose message never left
  (broker down, or the process died between the commit and the send) or was
  lost inside the broker is sent again by `recover_jobs`, which runs when a
  worker starts and every minute from Celery beat. A running job whose holder
  died is queued again (`jobs.holder_alive`).
- The services queue their own next step (validation queues a retrain, a
  retrain a publication), through `queue`, in the transaction of the change
  that asks for it: the job row commits with that change, or neither does.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .. import task_names
from ..models import Composition, Job, Mixture, ScheduledRun
from .jobs import MAX_ATTEMPTS, fail_job, holder_alive

log = logging.getLogger(__name__)

# The task that runs each action of a job (sent by name: see experts.task_names).
TASKS = {
    Job.Action.VALIDATE: task_names.VALIDATE,
    Job.Action.VALIDATE_ANCHOR: task_names.VALIDATE_ANCHOR,
    Job.Action.RETRAIN: task_names.RETRAIN,
    Job.Action.PUBLISH: task_names.PUBLISH,
    Job.Action.EXPORT: task_names.EXPORT,
    Job.Action.GGUF: task_names.GGUF,
    Job.Action.GENERATE: task_names.GENERATE,
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

    task = TASKS[job.action]
    kind = Mixture.objects.filter(pk=job.mixture_id).values_list("kind", flat=True).first()
    queue_name = task_names.queue_for(task, kind)
    options = {"countdown": countdown} if countdown else {}
    try:
        current_app.send_task(
            task,
            args=[job.pk],
            queue=queue_name,
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


def queue(action: str, *, mixture_id: int, countdown: int = 0, **fields) -> Job:
    """A new queued job, its message sent once the current transaction commits (at once
    outside one)."""
    with transaction.atomic():
        job = Job.objects.create(action=action, mixture_id=mixture_id, **fields)
        dispatch_on_commit(job, countdown)
    return job


def once_per_composition(composition: Composition, action: str, message: str, on_new=None):
    """The composition's job of this action that waits or runs, else a new one (sent
    after commit); `on_new` runs in the same transaction when one is created."""
    with transaction.atomic():
        Composition.objects.select_for_update().get(pk=composition.pk)
        waiting = Job.objects.filter(
            composition_id=composition.pk,
            action=action,
            status__in=(Job.Status.QUEUED, Job.Status.RUNNING),
        ).first()
        if waiting is not None:
            return waiting
        if on_new is not None:
            on_new()
        return queue(
            action,
            mixture_id=composition.mixture_id,
            composition_id=composition.pk,
            message=message,
        )


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
