"""A language-model mixture's anchor: uploaded by a maintainer, validated by a worker on
every domain's held-out text against the base, then merged into the base of every expert
and every composition of the mixture.

- `accept_anchor` checks the upload (the mixture's kind has anchors, it has no experts
  yet, no other anchor waits for its verdict, the domains have held-out data, the
  header is an anchor's on the plain base), stores it hashed, and records the `Anchor`
  with its validation job in one transaction that locks the mixture and checks again.
- `validate_anchor` (a job, through `jobs.run`) scores it: no domain may get worse
  than on the base. Accepted, it becomes the mixture's anchor in the transaction that
  checks, under the mixture's lock, that no expert arrived meanwhile.
- While the mixture has experts its anchor is frozen: they were trained on it. The
  answer offers `mixtures.copy_mixture`, a new mixture with the same settings and
  domains, where another anchor may go.
"""

from __future__ import annotations

import os

from django.conf import settings
from django.db import transaction

from routing.safetensors_header import ContractError

from ..models import Anchor, Expert, Job, Mixture
from .jobs import claim_for_validation, end_job, progress, run
from .queueing import queue
from .resources import kind_of, loaded_base, mixture_data, tensor_cache
from .uploads import ACTIVE, UploadError, spooled_path, store_hashed


def frozen_refusal(mixture: Mixture, count: int) -> UploadError:
    return UploadError(
        409,
        f"the mixture has {count} expert(s) trained on its current "
        + ("anchor" if mixture.anchor_id else "base without an anchor")
        + ": another anchor would make every one of them wrong, so the anchor is frozen "
        "while the mixture has experts. Copy the mixture (its settings and domains, no "
        f"experts: POST /api/mixtures/{mixture.slug}/copy/ or 'Copy this mixture' on its "
        "page) and upload the anchor there",
        "anchor_frozen",
    )


def _check_open(mixture: Mixture) -> None:
    """The mixture may take a new anchor now; UploadError (409) says why not."""
    count = Expert.objects.filter(mixture=mixture, status__in=ACTIVE).count()
    if count:
        raise frozen_refusal(mixture, count)
    waiting = Anchor.objects.filter(mixture=mixture, status__in=Anchor.ACTIVE).first()
    if waiting is not None:
        raise UploadError(
            409,
            f"anchor #{waiting.pk} of this mixture is still being validated; wait for its "
            "verdict before uploading another",
            "anchor_pending",
        )


def accept_anchor(user, mixture: Mixture, uploaded, adapter_config: dict | None = None,
                  name: str = "anchor") -> Anchor:  # fmt: skip
    """Check, store and record an anchor upload and queue its validation (see the module).
    UploadError says what is wrong; nothing is kept then."""
    info = mixture.kind_info
    if not info.has_anchor:
        raise UploadError(
            400, f"a {info.title.lower()} mixture has no anchor", "anchor_not_supported"
        )
    _check_open(mixture)
    if not mixture.domains.filter(eval_count__gt=0).exists():
        raise UploadError(
            400,
            "no domain of the mixture has data yet: an anchor is judged on every domain's "
            "held-out text against the base, so add the domains' data first",
            "no_data",
        )
    if uploaded.size > mixture.max_upload_bytes:
        raise UploadError(
            413,
            f"the file is {uploaded.size:,} bytes; this mixture accepts at most "
            f"{mixture.max_upload_bytes:,}",
            "too_large",
        )
    path, temporary = spooled_path(uploaded)
    try:
        try:
            header = kind_of(mixture).check_expert(
                path,
                base=mixture.base_model.spec(),  # an anchor builds on the plain base
                adapter_config=adapter_config,
                look_beside=False,
            )
        except ContractError as exc:
            raise UploadError(
                400, f"the file is not an anchor of this base: {exc}", exc.code
            ) from None
        if header.source == "moecollab" and header.role != "anchor":
            raise UploadError(
                400,
                "the file is an expert (its moecollab.role is not 'anchor'): make an anchor "
                "with `python -m routing lm anchor`, or upload a plain PEFT adapter",
                "not_an_anchor",
            )
        anchor = Anchor(
            mixture=mixture,
            owner=user,
            name=name[:100] or "anchor",
            adapter_config=adapter_config,
            source=header.source,
            size=uploaded.size,
            num_parameters=header.num_parameters,
            target_modules=sorted(header.lora.target_modules),
            report={
                "header": {
                    "rank": header.lora.r,
                    "alpha": header.lora.alpha,
                    "router_stats": header.router_stats,
                }
            },  # fmt: skip
        )
        anchor.sha256 = store_hashed(anchor.file, path, "anchor.safetensors")
        try:
            with transaction.atomic():
                Mixture.objects.select_for_update().filter(pk=mixture.pk).first()
                _check_open(mixture)
                if mixture.anchor_id and mixture.anchor.sha256 == anchor.sha256:
                    raise UploadError(409, "this file is the mixture's anchor already", "duplicate")
                anchor.save()
                queue(
                    Job.Action.VALIDATE_ANCHOR,
                    mixture_id=mixture.pk,
                    anchor=anchor,
                    message="waiting for a worker",
                )
        except BaseException:
            anchor.file.delete(save=False)
            raise
        return anchor
    finally:
        if temporary:
            os.unlink(path)


# --- the worker's side ----------------------------------------------------------------


def validate_anchor(job_id: int) -> None:
    """The anchor's validation job (a Celery task body)."""
    run(job_id, _validate, what="anchor validation",
        soft_limit=settings.MOECOLLAB_VALIDATION_SOFT_LIMIT)  # fmt: skip


def _validate(job: Job) -> None:
    anchor = job.anchor
    if not claim_for_validation(job, anchor, "anchor"):
        return
    mixture = Mixture.objects.select_related("base_model").get(pk=anchor.mixture_id)
    accepted, report = _judge(mixture, anchor, lambda p, m: progress(job, p, m))
    with transaction.atomic():
        Mixture.objects.select_for_update().filter(pk=mixture.pk).first()
        count = Expert.objects.filter(mixture=mixture, status__in=ACTIVE).count()
        if accepted and count:  # an expert arrived on the old base while this one ran
            accepted = False
            report["problems"] = [frozen_refusal(mixture, count).message]
            report["summary"] = "the mixture has experts now"
        status = Anchor.Status.ACCEPTED if accepted else Anchor.Status.REJECTED
        changed = Anchor.objects.filter(pk=anchor.pk, status=Anchor.Status.VALIDATING).update(
            status=status, report={**anchor.report, **report}
        )
        if changed and accepted:
            Mixture.objects.filter(pk=mixture.pk).update(anchor=anchor)
        end_job(job, Job.Status.SUCCEEDED, f"{status}: {report['summary']}")


def _judge(mixture: Mixture, anchor: Anchor, report_progress) -> tuple[bool, dict]:
    """Load the base with the anchor merged and score it on every domain; (accepted, report)."""
    kind, base = kind_of(mixture), mixture.base_model
    report_progress(5, "merging the anchor into the base")
    try:
        anchored = loaded_base(mixture.kind, base.name, base.revision, anchor.sha256)
    except ContractError as exc:
        return False, {"summary": f"the file breaks the contract ({exc.code})",
                       "problems": [str(exc)]}  # fmt: skip
    plain = loaded_base(mixture.kind, base.name, base.revision, "")
    data = mixture_data(mixture)
    if not data:
        problem = "the mixture's domains have no data to judge it on"
        return False, {"summary": "no domain has data", "problems": [problem]}
    report_progress(20, f"held-out perplexity on {len(data)} domains, with and without it")
    score = kind.score_anchor(plain, anchored, data, tensor_cache(), routing=mixture.routing)
    return not score.problems, {
        "metrics": score.metrics,
        "problems": list(score.problems),
        "summary": score.summary,
    }
