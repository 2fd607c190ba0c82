"""Validating an uploaded expert: the contract, its own held-out score, and a candidate
composition that must not make any other domain worse than the mixture tolerates.

Every entry point takes a Job id and is idempotent: state changes are
compare-and-set, a job that already ended is left alone, a redelivered job
resumes from the database's state, and a job that keeps dying is failed
after `jobs.MAX_ATTEMPTS` deliveries instead of looping.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from routing.safetensors_header import ContractError

from ..models import Expert, Job, Mixture
from .compositions import accepted_experts, compose_experts, enqueue_retrain
from .jobs import claim_for_validation, end_job, progress, run
from .queueing import queue
from .resources import base_for, kind_of, loaded_expert, mixture_data, tensor_cache


def enqueue_validation(expert: Expert) -> Job:
    """Queue the expert's validation, in the caller's transaction (the upload's, or the
    retry's): its job commits with the change that asks for it, or not at all."""
    return queue(
        Job.Action.VALIDATE,
        mixture_id=expert.mixture_id,
        expert=expert,
        message="waiting for a worker",
    )


def validate(job_id: int) -> None:
    """The validation job (a Celery task body); an accept queues a retrain."""
    run(job_id, _validate, what="validation", soft_limit=settings.MOECOLLAB_VALIDATION_SOFT_LIMIT)


def _validate(job: Job) -> None:
    expert = job.expert
    if not claim_for_validation(job, expert, "expert"):
        return
    expert.refresh_from_db()
    twin = accepted_twin(expert)
    if twin is None:
        accepted, report = run_validation(expert, lambda p, m: progress(job, p, m))
    else:
        accepted, report = False, twin_report(twin)
    with transaction.atomic():
        if accepted:
            # Identical files pending for two people: the first accepted is the one.
            Mixture.objects.select_for_update().filter(pk=expert.mixture_id).first()
            twin = accepted_twin(expert)
            if twin is not None:
                accepted, report = False, twin_report(twin)
        status = Expert.Status.ACCEPTED if accepted else Expert.Status.REJECTED
        changed = Expert.objects.filter(pk=expert.pk, status=Expert.Status.VALIDATING).update(
            status=status, report=report, metrics=report.get("metrics", {})
        )
        # The verdict and the end of the job commit together: nobody sees one without the other.
        end_job(job, Job.Status.SUCCEEDED, f"{status}: {report['summary']}")
        if changed and accepted:
            enqueue_retrain(expert.mixture)


def accepted_twin(expert: Expert) -> Expert | None:
    """An accepted expert of the mixture with the very same file, if any."""
    return (
        Expert.objects.filter(
            mixture_id=expert.mixture_id, sha256=expert.sha256, status=Expert.Status.ACCEPTED
        )
        .exclude(pk=expert.pk)
        .first()
    )


def twin_report(twin: Expert) -> dict:
    return {
        "summary": "the mixture already holds this exact file",
        "problems": [
            f"this file is identical (same sha256) to accepted expert #{twin.pk} "
            f"({twin.name!r}); a mixture holds each file once"
        ],
    }


def run_validation(expert: Expert, report_progress) -> tuple[bool, dict]:
    """Check, evaluate and trial an expert; (accepted, report a contributor can act on)."""
    mixture, domain = expert.mixture, expert.domain
    kind = kind_of(mixture)
    report_progress(5, "checking every tensor against the contract")
    try:
        loaded = loaded_expert(expert)
    except ContractError as exc:
        return False, {
            "summary": f"the file breaks the contract ({exc.code})",
            "problems": [str(exc)],
        }
    data = mixture_data(mixture)
    if domain.name not in data:
        return False, {
            "summary": "the domain has no evaluation data yet",
            "problems": [f"domain {domain.name!r} has no data; ask a maintainer"],
        }
    report_progress(20, "evaluating on the domain's held-out data")
    score = kind.score_expert(
        loaded,
        base_for(mixture),
        data[domain.name],
        tensor_cache(),
        routing=mixture.routing,
        tolerance=mixture.tolerance,
    )
    report = {"metrics": score.metrics, "problems": list(score.problems), **score.details}
    report_progress(50, "trying a composition with the expert")
    # The composition the retrain would store, were this expert accepted now.
    experts = sorted(
        [e for e in accepted_experts(mixture) if e.pk != expert.pk] + [expert], key=lambda e: e.pk
    )
    candidate = compose_experts(mixture, experts, data)
    report["candidate"] = kind.info.domain_scores(candidate.report)
    current = mixture.compositions.current().first()
    if current is not None:
        before = kind.info.domain_scores(current.metrics or {})
        report["current"] = before
        report["problems"] += kind.info.regressions(
            before, report["candidate"], tolerance=mixture.tolerance, own_domain=domain.name
        )
    report_progress(90, "writing the report")
    accepted = not report["problems"]
    report["summary"] = (
        score.summary if accepted else f"{len(report['problems'])} problem(s) to fix"
    )
    return accepted, report
