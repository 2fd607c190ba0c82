"""Expert pages: upload, the expert with its live status, download, retire."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ..downloads import stored_file_response
from ..forms import UploadForm
from ..models import Expert, Mixture
from ..queries import get_expert, visible_jobs
from ..services.experts import may_retry, retire, retry
from ..services.uploads import UploadError, UploadRequest, accept_upload
from ..uploading import bound_form

FINAL = (
    Expert.Status.ACCEPTED,
    Expert.Status.REJECTED,
    Expert.Status.FAILED,
    Expert.Status.RETIRED,
)


@login_required
def upload(request, slug: str):
    mixture = get_object_or_404(Mixture, slug=slug)
    if request.method != "POST":
        return redirect(mixture)
    form, refusal = bound_form(request, UploadForm, mixture=mixture)
    status = refusal.status if refusal else 400
    if refusal is None and form.is_valid():
        data = form.cleaned_data
        try:
            expert = accept_upload(request.user, UploadRequest.of(mixture, data["domain"], data))
        except UploadError as exc:
            form.add_error("file", exc.message)
            status = exc.status
        else:
            messages.success(request, f"Uploaded {expert.name}; validation has been queued.")
            return redirect(expert)
    return render(request, "experts/upload.html", {"mixture": mixture, "form": form}, status=status)


def expert_detail(request, pk: int):
    expert = get_expert(request.user, pk)
    jobs = visible_jobs(request.user).filter(expert=expert)[:10]
    return render(
        request,
        "experts/expert.html",
        {
            "expert": expert,
            "jobs": jobs,
            "is_owner": request.user.is_authenticated and expert.owner_id == request.user.pk,
            "may_retry": expert.status == Expert.Status.FAILED and may_retry(request.user, expert),
            "kind": expert.mixture.kind_info,
            "score": expert.metrics.get(expert.mixture.kind_info.metric),
            "figures": expert.mixture.kind_info.expert_figures(
                expert.metrics,
                expert.report,
                expert.domain.name,
                expert.mixture.anchor.report if expert.mixture.anchor_id else None,
            ),
        },
    )


def expert_download(request, pk: int):
    expert = get_expert(request.user, pk)
    if not expert.file:
        raise Http404("no file")
    return stored_file_response(expert.file.name, f"{expert.name}-{expert.sha256[:12]}.safetensors")


@login_required
@require_POST
def expert_retire(request, pk: int):
    expert = get_expert(request.user, pk)
    if expert.owner_id != request.user.pk:
        raise Http404("no such expert")
    if retire(expert):
        messages.success(request, f"{expert.name} is retired; it leaves the next composition.")
    return redirect(expert)


@login_required
@require_POST
def expert_retry(request, pk: int):
    expert = get_expert(request.user, pk)
    if not may_retry(request.user, expert):
        raise Http404("no such expert")
    if retry(expert) is not None:
        messages.success(request, f"{expert.name} is queued for validation again.")
    else:
        messages.error(
            request, f"{expert.name} is {expert.status}: only a failed expert is retried."
        )
    return redirect(expert)


def expert_status(request, pk: int):
    """Status and latest job of an expert, for the page's live refresh."""
    expert = get_expert(request.user, pk)
    job = expert.jobs.order_by("-created_at").first()
    return JsonResponse(
        {
            "status": expert.status,
            "final": expert.status in FINAL,
            "job": job_summary(job),
            "metrics": expert.metrics,
        }
    )


def job_summary(job) -> dict | None:
    """What a live status badge shows of a job (None: no job yet)."""
    if job is None:
        return None
    return {
        "action": job.action,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
    }
