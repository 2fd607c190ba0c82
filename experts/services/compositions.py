"""Compositions: train the gate over a mixture's accepted experts, store each new
version with its metrics and contributions, keep one current, pin another.

A retrain reads the accepted set when it runs, so accepts that arrive while it waits
share it. Validation composes its candidate with `compose_experts` too, warm-started
from the current composition exactly as the retrain does: when nothing else is
accepted in between, the retrain finds that candidate's gate already trained.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction

from ..models import Composition, Expert, Job, Mixture
from .exports import export_now
from .jobs import end_job, progress, run
from .publishing import enqueue_publish
from .queueing import dispatch_on_commit, never_sent, queue
from .resources import (
    base_for,
    kind_of,
    load_model,
    loaded_base,
    loaded_expert,
    mixture_data,
    tensor_cache,
)
from .storage import delete_prefix, folder_name, is_stored, put_folder, staging_folder

log = logging.getLogger(__name__)


def accepted_experts(mixture: Mixture) -> list[Expert]:
    """The accepted experts in the order they joined (pk order), so warm starts line up."""
    return list(
        Expert.objects.filter(mixture=mixture, status=Expert.Status.ACCEPTED)
        .select_related("domain", "mixture__base_model")
        .order_by("pk")
    )


# --- composing ------------------------------------------------------------------------


def compose_experts(mixture: Mixture, experts: list[Expert], data: dict | None = None):
    """The kind's composition of `experts` (rows, in gate order) with the mixture's routing
    settings, warm-started from the current composition when its experts come first."""
    kind = kind_of(mixture)
    current = mixture.compositions.current().first()
    previous = None
    if current is not None and is_stored(current):
        previous = load_model(current)
    return kind.compose(
        base_for(mixture),
        [loaded_expert(e) for e in experts],
        [e.domain.name for e in experts],
        data if data is not None else mixture_data(mixture),
        cache=tensor_cache(),
        routing=mixture.routing,
        previous=previous,
    )


def add_plain_base(mixture: Mixture, report: dict) -> None:
    """Each domain's held-out metric on the base without the anchor, into an anchored
    composition's report (`plain_<metric>` beside `base_<metric>`, base + anchor)."""
    base = mixture.base_model
    plain = loaded_base(mixture.kind, base.name, base.revision, "")
    data = {d: v for d, v in mixture_data(mixture).items() if d in report.get("domains", {})}
    scores = kind_of(mixture).score_base(plain, data, tensor_cache(), routing=mixture.routing)
    metric = mixture.kind_info.metric
    for name, value in scores.items():
        report["domains"][name][f"plain_{metric}"] = value


def enqueue_retrain(mixture) -> Job:
    """Queue one retrain for the mixture, unless one is already waiting (it will see
    every expert accepted before it runs, so accepts close together share a retrain).
    A waiting retrain whose message never reached the broker is sent again now."""
    with transaction.atomic():
        waiting = (
            Job.objects.select_for_update()
            .filter(mixture=mixture, action=Job.Action.RETRAIN, status=Job.Status.QUEUED)
            .first()
        )
        if waiting is not None:
            if never_sent(waiting):
                dispatch_on_commit(waiting)
            return waiting
        return queue(
            Job.Action.RETRAIN,
            mixture_id=mixture.pk,
            message="waiting for more accepted experts",
            countdown=settings.MOECOLLAB_RETRAIN_COALESCE_SECONDS,
        )


def retrain(job_id: int) -> Composition | None:
    """The retrain job (a Celery task body): retrain the gate over the accepted experts
    and store a new composition.

    Nothing is stored when the set equals the current composition's. The new
    composition is then exported for download, and published when the mixture says so.
    """
    return run(
        job_id, _retrain, what="retraining", soft_limit=settings.MOECOLLAB_RETRAIN_SOFT_LIMIT
    )


def _retrain(job: Job) -> Composition | None:
    mixture = job.mixture
    kind = kind_of(mixture)
    experts = accepted_experts(mixture)
    shas = [e.sha256 for e in experts]
    current = mixture.compositions.current().first()
    if not experts or (current is not None and current.expert_shas == shas):
        end_job(job, Job.Status.SUCCEEDED, "the composition is up to date")
        return current
    progress(job, 10, f"loading {len(experts)} experts")
    progress(job, 30, "retraining the gate on cached tensors")
    composed = compose_experts(mixture, experts)
    if mixture.anchor_id:  # the page shows the plain base beside base + anchor
        progress(job, 60, "scoring the base model without the anchor")
        add_plain_base(mixture, composed.report)
    progress(job, 70, "measuring each expert's contribution")
    contributions = {
        str(e.pk): measured
        for e, measured in zip(experts, kind.contributions(composed), strict=True)
    }
    composition = _store(job, mixture, experts, composed, contributions)
    if composition is None:
        return mixture.compositions.current().first()
    Job.objects.filter(pk=job.pk).update(composition=composition)
    progress(job, 90, "exporting the composition as a transformers model")
    export_now(composition, composed.model)
    if mixture.publish_automatically:
        enqueue_publish(composition)
    end_job(
        job, Job.Status.SUCCEEDED, f"v{composition.version}: {kind.info.summary(composed.report)}"
    )
    return composition


def _store(job, mixture, experts, composed, contributions) -> Composition | None:
    """Save the composition's folder and row as the new current version; None when another
    worker stored this version first."""
    version = (
        mixture.compositions.order_by("-version").values_list("version", flat=True).first() or 0
    ) + 1
    prefix = folder_name(mixture, version)
    staging = staging_folder()
    kind_of(mixture).save_composition(composed.model, staging)
    manifest = put_folder(staging, prefix)  # stored before the row that points at it
    try:
        with transaction.atomic():
            composition = Composition.objects.create(
                mixture=mixture,
                version=version,
                expert_shas=[e.sha256 for e in experts],
                folder=prefix,
                anchor_id=mixture.anchor_id,  # frozen while the mixture has experts
                metrics=composed.report,
                contributions=contributions,
                is_current=False,
            )
            composition.experts.set(experts)
            _make_current(composition)
    except IntegrityError:
        delete_prefix(prefix, manifest)
        end_job(job, Job.Status.SUCCEEDED, "another worker stored this composition")
        return None
    return composition


def _make_current(composition: Composition) -> None:
    Composition.objects.filter(mixture_id=composition.mixture_id).exclude(pk=composition.pk).update(
        is_current=False
    )
    Composition.objects.filter(pk=composition.pk).update(is_current=True)


def pin(composition: Composition) -> None:
    """Make a composition current (maintainers pin, or roll back to an older version)."""
    with transaction.atomic():
        _make_current(composition)
