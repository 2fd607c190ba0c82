"""Enqueueing background work: a Job row, then a Celery message after commit.

Task bodies live in `workers/`; `services.jobs` names them, so the web process
never imports the worker's heavy dependencies. A message that cannot be sent
leaves its job queued, and `services.jobs.recover_jobs` sends it later.
"""

from __future__ import annotations

from django.db import transaction

from .models import Composition, Expert, Job
from .services.jobs import dispatch_on_commit, never_sent
from .services.publishing import hub_configured


def enqueue_validation(expert: Expert) -> Job:
    """Record a queued validation job and send its message once the job row is committed."""
    job = Job.objects.create(
        kind=Job.Kind.VALIDATE,
        mixture_id=expert.mixture_id,
        expert=expert,
        message="waiting for a worker",
    )
    dispatch_on_commit(job)
    return job


def enqueue_retrain(mixture) -> Job:
    """Queue one retrain for the mixture, unless one is already waiting (it will see
    every expert accepted before it runs, so accepts close together share a retrain).
    A waiting retrain whose message never reached the broker is sent again now."""
    from django.conf import settings

    with transaction.atomic():
        waiting = (
            Job.objects.select_for_update()
            .filter(mixture=mixture, kind=Job.Kind.RETRAIN, status=Job.Status.QUEUED)
            .first()
        )
        if waiting is not None:
            if never_sent(waiting):
                dispatch_on_commit(waiting)
            return waiting
        job = Job.objects.create(
            kind=Job.Kind.RETRAIN, mixture=mixture, message="waiting for more accepted experts"
        )
        dispatch_on_commit(job, countdown=settings.MOECOLLAB_RETRAIN_COALESCE_SECONDS)
    return job


def enqueue_publish(composition: Composition) -> Job | None:
    """Queue the composition's publication to the Hub; None when publishing is not
    configured. A publication already waiting or running is returned, not doubled."""
    if not hub_configured():
        return None

    def mark_queued():
        Composition.objects.filter(pk=composition.pk).update(
            hub_status=Composition.Publish.QUEUED, hub_error=""
        )

    return _once_per_composition(
        composition, Job.Kind.PUBLISH, "waiting for a publishing worker", mark_queued
    )


def enqueue_export(composition: Composition) -> Job:
    """Queue the export of a composition whose download is missing (the web process never
    loads a model); an export already waiting or running is returned, not doubled."""
    return _once_per_composition(
        composition, Job.Kind.EXPORT, "waiting for a worker to prepare the download"
    )


def _once_per_composition(composition: Composition, kind: str, message: str, on_new=None) -> Job:
    """The composition's job of this kind that waits or runs, else a new one (sent after
    commit); `on_new` runs in the same transaction when one is created."""
    with transaction.atomic():
        Composition.objects.select_for_update().get(pk=composition.pk)
        waiting = Job.objects.filter(
            composition_id=composition.pk,
            kind=kind,
            status__in=(Job.Status.QUEUED, Job.Status.RUNNING),
        ).first()
        if waiting is not None:
            return waiting
        if on_new is not None:
            on_new()
        job = Job.objects.create(
            kind=kind,
            mixture_id=composition.mixture_id,
            composition_id=composition.pk,
            message=message,
        )
        dispatch_on_commit(job)
    return job


def enqueue_generation(composition: Composition, user, request: dict) -> Job:
    """Queue a generation from a composition for `user` (the request is already checked)."""
    with transaction.atomic():
        job = Job.objects.create(
            kind=Job.Kind.GENERATE,
            mixture_id=composition.mixture_id,
            composition_id=composition.pk,
            requested_by=user,
            request=request,
            message="waiting for a worker",
        )
        dispatch_on_commit(job)
    return job
