"""The engine behind the workers: validate an expert, retrain the gate, store compositions.

Every entry point takes a Job id and is idempotent: state changes are
compare-and-set, a job that already ended is left alone, a redelivered job
resumes from the database's state, and a job that keeps dying is failed
after `MAX_ATTEMPTS` deliveries instead of looping.
"""

from __future__ import annotations

import logging
import shutil
from functools import lru_cache
from pathlib import Path

import torch
from django.conf import settings
from django.db import IntegrityError, transaction

from routing.base import BaseEncoder, pick_device
from routing.cache import TensorCache
from routing.compose import Composition as RoutedComposition
from routing.config import GateConfig, LossWeights, TrainConfig, from_dict
from routing.experts import load_expert
from routing.metrics import accuracy, likely_causes, macro_f1
from routing.safetensors_header import ContractError
from routing.workflow import cached_split, compose, expert_log_probs

from ..models import Composition, Expert, Job, Mixture
from .domains import domain_data
from .jobs import end_job, heartbeat, progress, start_job

log = logging.getLogger(__name__)


# --- shared resources ---------------------------------------------------------


@lru_cache(maxsize=4)
def encoder_for(name: str, revision: str) -> BaseEncoder:
    """One base encoder per worker process and base model (loading costs seconds)."""
    return BaseEncoder(name, revision=revision or None, device=pick_device())


def tensor_cache() -> TensorCache:
    """The process's cache of features and expert outputs (one instance, so it counts hits)."""
    return _tensor_cache(str(settings.MOECOLLAB_CACHE_DIR))


@lru_cache(maxsize=4)
def _tensor_cache(root: str) -> TensorCache:
    return TensorCache(root)


def _configs(mixture: Mixture) -> tuple[GateConfig, TrainConfig]:
    routing = mixture.routing or {}
    gate = from_dict(GateConfig, routing.get("gate"))
    loss = from_dict(LossWeights, routing.get("loss"))
    return gate, TrainConfig(seed=int(routing.get("seed", 0)), loss=loss)


def compose_mixture(mixture, loaded, domains, data, encoder, cache, previous=None):
    """Train the mixture's gate over loaded experts with its routing settings."""
    gate_config, train_config = _configs(mixture)
    return compose(
        encoder,
        loaded,
        domains,
        {d: data[d] for d in set(domains)},
        cache=cache,
        gate_config=gate_config,
        train_config=train_config,
        previous=previous,
    )


def _domain_data(mixture: Mixture) -> dict:
    return {d.name: domain_data(d) for d in mixture.domains.all() if d.router_count}


def _load(expert: Expert):
    return load_expert(
        expert.file.path,
        base=expert.mixture.base_model.spec(),
        labels=list(expert.domain.labels),
        adapter_config=expert.adapter_config,
        name=f"{expert.name} #{expert.pk}",
    )


def accepted_experts(mixture: Mixture) -> list[Expert]:
    """The accepted experts in the order they joined (pk order), so warm starts line up."""
    return list(
        Expert.objects.filter(mixture=mixture, status=Expert.Status.ACCEPTED)
        .select_related("domain", "mixture__base_model")
        .order_by("pk")
    )


# --- validation ---------------------------------------------------------------


def validate(job_id: int, *, enqueue_retrain=None) -> None:
    job = start_job(job_id)
    if job is None:
        return
    with heartbeat(job):
        _validate(job, enqueue_retrain)


def _validate(job: Job, enqueue_retrain) -> None:
    expert = job.expert
    claimed = Expert.objects.filter(
        pk=expert.pk,
        status__in=[Expert.Status.UPLOADED, Expert.Status.VALIDATING, Expert.Status.FAILED],
    ).update(status=Expert.Status.VALIDATING)
    if not claimed:
        expert.refresh_from_db()
        end_job(job, Job.Status.SUCCEEDED, f"nothing to do: the expert is {expert.status}")
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
        if changed and accepted and enqueue_retrain is not None:
            transaction.on_commit(lambda: enqueue_retrain(expert.mixture))


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
    report_progress(5, "checking every tensor against the contract")
    try:
        loaded = _load(expert)
    except ContractError as exc:
        return False, {
            "summary": f"the file breaks the contract ({exc.code})",
            "problems": [str(exc)],
        }
    encoder = encoder_for(mixture.base_model.name, mixture.base_model.revision)
    cache = tensor_cache()
    data = _domain_data(mixture)
    if domain.name not in data:
        return False, {
            "summary": "the domain has no evaluation data yet",
            "problems": [f"domain {domain.name!r} has no data; ask a maintainer"],
        }
    report_progress(20, "evaluating on the domain's held-out data")
    ev = data[domain.name].eval
    index = {label: i for i, label in enumerate(loaded.labels)}
    truth = torch.tensor([index.get(x, -1) for x in ev.labels])
    pred = expert_log_probs(loaded, encoder, ev.texts, cache).argmax(-1)
    majority = max(ev.labels.count(x) for x in set(ev.labels)) / len(ev.labels)
    metrics = {
        "accuracy": accuracy(pred, truth),
        "macro_f1": macro_f1(pred, truth, range(len(loaded.labels))),
        "eval_examples": len(ev),
        "majority_baseline": majority,
    }
    report = {"metrics": metrics, "problems": []}
    if metrics["accuracy"] <= majority:
        causes = likely_causes(pred, truth, loaded.labels)
        report["problems"].append(
            f"held-out accuracy {metrics['accuracy']:.4f} on {len(ev)} texts is no better than "
            f"always predicting the most frequent label ({majority:.4f}). Likely causes, most "
            "likely first: " + "; ".join(f"({i}) {c}" for i, c in enumerate(causes, 1))
        )
        report["likely_causes"] = causes
    report_progress(50, "trying a composition with the expert")
    current = mixture.compositions.filter(is_current=True).first()
    others = [e for e in accepted_experts(mixture) if e.pk != expert.pk]
    experts = [_load(e) for e in others] + [loaded]
    domains = [e.domain.name for e in others] + [domain.name]
    _, candidate = compose_mixture(mixture, experts, domains, data, encoder, cache)
    report["candidate"] = {d: m["accuracy"] for d, m in candidate["domains"].items()}
    if current is not None:
        before = {d: m["accuracy"] for d, m in current.metrics.get("domains", {}).items()}
        report["current"] = before
        for d in before:
            after = report["candidate"].get(d)
            if d != domain.name and after is not None and before[d] - after > mixture.tolerance:
                report["problems"].append(
                    f"with this expert, domain {d!r} falls from {before[d]:.4f} to {after:.4f} "
                    f"(more than the mixture's tolerance {mixture.tolerance}); the gate sends "
                    f"its examples to this expert: train on data closer to {domain.name!r} only"
                )
    report_progress(90, "writing the report")
    accepted = not report["problems"]
    report["summary"] = (
        f"held-out accuracy {metrics['accuracy']:.4f}"
        if accepted
        else f"{len(report['problems'])} problem(s) to fix"
    )
    return accepted, report


# --- gate retraining and compositions ------------------------------------------


def composition_folder(mixture: Mixture, version: int) -> Path:
    return Path(settings.MEDIA_ROOT) / "compositions" / mixture.slug / f"v{version}"


def retrain(job_id: int, *, enqueue_publish=None) -> Composition | None:
    """Retrain the gate over the accepted experts and store a new composition.

    Accepts that arrived while this job waited are all included: the job reads
    the accepted set when it runs, so several accepts coalesce into one retrain.
    Nothing is stored when the set equals the current composition's. The new
    composition is exported for download, and published when the mixture says so.
    """
    job = start_job(job_id)
    if job is None:
        return None
    with heartbeat(job):
        return _retrain(job, enqueue_publish)


def _retrain(job: Job, enqueue_publish) -> Composition | None:
    mixture = job.mixture
    experts = accepted_experts(mixture)
    shas = [e.sha256 for e in experts]
    current = mixture.compositions.filter(is_current=True).first()
    if not experts or (current is not None and current.expert_shas == shas):
        end_job(job, Job.Status.SUCCEEDED, "the composition is up to date")
        return current
    progress(job, 10, f"loading {len(experts)} experts")
    encoder = encoder_for(mixture.base_model.name, mixture.base_model.revision)
    cache = tensor_cache()
    data = _domain_data(mixture)
    loaded = [_load(e) for e in experts]
    domains = [e.domain.name for e in experts]
    previous = None
    if current is not None and composition_folder(mixture, current.version).is_dir():
        previous = RoutedComposition.load(
            composition_folder(mixture, current.version), encoder=encoder
        )
    progress(job, 30, "retraining the gate on cached tensors")
    routed, report = compose_mixture(mixture, loaded, domains, data, encoder, cache, previous)
    progress(job, 70, "measuring each expert's contribution")
    contributions = measure_contributions(routed, experts, data, encoder, cache, report)
    version = (
        mixture.compositions.order_by("-version").values_list("version", flat=True).first() or 0
    ) + 1
    folder = composition_folder(mixture, version)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    routed.save(tmp)
    try:
        with transaction.atomic():
            composition = Composition.objects.create(
                mixture=mixture,
                version=version,
                expert_shas=shas,
                folder=str(folder.relative_to(settings.MEDIA_ROOT)),
                metrics=report,
                contributions=contributions,
                is_current=False,
            )
            composition.experts.set(experts)
            Composition.objects.filter(mixture=mixture).exclude(pk=composition.pk).update(
                is_current=False
            )
            Composition.objects.filter(pk=composition.pk).update(is_current=True)
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
    except IntegrityError:  # another worker stored this version first
        shutil.rmtree(tmp, ignore_errors=True)
        end_job(job, Job.Status.SUCCEEDED, "another worker stored this composition")
        return mixture.compositions.filter(is_current=True).first()
    Job.objects.filter(pk=job.pk).update(composition=composition)
    progress(job, 90, "exporting the composition as a transformers model")
    _export(composition, routed)
    if enqueue_publish is not None and mixture.publish_automatically:
        enqueue_publish(composition)
    end_job(
        job,
        Job.Status.SUCCEEDED,
        f"v{version}: overall accuracy {report['overall']['accuracy']:.4f}",
    )
    return composition


def _export(composition: Composition, routed) -> None:
    """Write the download export now; a failure here only delays it to the first download."""
    from .publish import ensure_export

    try:
        ensure_export(composition, routed)
    except Exception:
        log.exception("exporting %s failed; it will be exported on demand", composition)


@torch.inference_mode()
def measure_contributions(routed, experts, data, encoder, cache, report) -> dict:
    """Each expert's share of traffic and the drop in overall accuracy without it."""
    split = cached_split(routed.experts, routed.expert_domains, data, "eval", encoder, cache)
    _, weights = routed.mix_cached(split.features, split.expert_probs)
    full = report["overall"]["accuracy"]
    gate_probs = routed.gate(split.features.to(encoder.device), top_k=len(experts)).probs.cpu()
    out = {}
    for k, expert in enumerate(experts):
        w = weights.clone()
        w[:, k] = 0
        total = w.sum(-1, keepdim=True)
        # examples routed only to this expert fall back to the gate's dense choice
        dense = gate_probs.clone()
        dense[:, k] = 0
        left = dense.sum(-1, keepdim=True)
        w = torch.where(total > 0, w / total.clamp(min=1e-12), dense / left.clamp(min=1e-12))
        pred = torch.einsum("bn,bnu->bu", w, split.expert_probs).argmax(-1)
        pred[w.sum(-1) == 0] = -1  # no expert left for these examples: no answer
        without = accuracy(pred, split.targets)
        out[str(expert.pk)] = {"drop": full - without, "share": report["utilisation"]["load"][k]}
    return out


def pin(composition: Composition) -> None:
    """Make a composition current (maintainers pin, or roll back to an older version)."""
    with transaction.atomic():
        Composition.objects.filter(mixture=composition.mixture).update(is_current=False)
        Composition.objects.filter(pk=composition.pk).update(is_current=True)
