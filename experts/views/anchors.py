"""A language-model mixture's anchor page: the anchor with its figures and downloads, its
maintainers' upload form (or, once the mixture has experts, the offer to copy it), and
the uploads with their verdicts."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..downloads import ANCHOR_FORMATS, anchor_response
from ..forms import AnchorForm
from ..models import Anchor, Expert, Mixture
from ..queries import get_maintained_mixture
from ..services.anchors import accept_anchor
from ..services.mixtures import copy_mixture
from ..services.uploads import ACTIVE, UploadError
from ..uploading import bound_form
from .experts import job_summary


def _mixture(slug: str) -> Mixture:
    mixture = get_object_or_404(Mixture.objects.select_related("base_model", "anchor"), slug=slug)
    if not mixture.kind_info.has_anchor:
        raise Http404("this kind of mixture has no anchor")
    return mixture


def _page(request, mixture: Mixture, form=None, status: int = 200):
    maintainer = mixture.is_maintainer(request.user)
    uploads = list(mixture.anchors.select_related("owner")[:20]) if maintainer else []
    latest = uploads[0] if uploads else None
    experts = Expert.objects.filter(mixture=mixture, status__in=ACTIVE).count()
    return render(
        request,
        "experts/anchor.html",
        {
            "mixture": mixture,
            "anchor": mixture.anchor,
            "rows": _rows(mixture.anchor),
            "kind": mixture.kind_info,
            "is_maintainer": maintainer,
            "uploads": uploads,
            "latest": latest,
            "latest_job": latest.jobs.order_by("-pk").first() if latest else None,
            "frozen": experts,
            "form": (form or AnchorForm()) if maintainer and not experts else None,
        },
        status=status,
    )


def _rows(anchor: Anchor | None) -> list[dict]:
    """Per domain: the base's held-out perplexity, with the anchor, and the change."""
    if anchor is None:
        return []
    domains = (anchor.report.get("metrics") or {}).get("domains") or {}
    return [
        {
            "domain": name,
            "base": m["base_perplexity"],
            "anchored": m["perplexity"],
            "change": 100 * (m["perplexity"] / m["base_perplexity"] - 1)
            if m["base_perplexity"]
            else 0.0,
        }
        for name, m in domains.items()
    ]


def anchor_page(request, slug: str):
    mixture = _mixture(slug)
    if request.method != "POST":
        return _page(request, mixture)
    if not request.user.is_authenticated:
        return redirect(f"{reverse('login')}?next={request.path}")
    mixture = get_maintained_mixture(request.user, slug)
    form, refusal = bound_form(request, AnchorForm)
    status = refusal.status if refusal else 400
    if refusal is None and form.is_valid():
        data = form.cleaned_data
        try:
            accept_anchor(request.user, mixture, data["file"], data.get("adapter_config"))
        except UploadError as exc:
            form.add_error("file", exc.message)
            status = exc.status
        else:
            messages.success(request, "The anchor is uploaded; a worker validates it now.")
            return redirect("anchor", slug=mixture.slug)
    return _page(request, mixture, form, status)


def anchor_status(request, slug: str):
    """The latest anchor upload's status and job, for the page's live refresh (maintainers)."""
    mixture = get_maintained_mixture(request.user, slug)
    latest = mixture.anchors.first()
    if latest is None:
        raise Http404("no anchor was uploaded")
    job = latest.jobs.order_by("-pk").first()
    return JsonResponse(
        {
            "status": latest.status,
            "final": latest.status not in Anchor.ACTIVE,
            "job": job_summary(job),
        }
    )


def anchor_download(request, slug: str):
    """The accepted anchor, as stored or (`?as=peft`) as a zipped PEFT adapter folder."""
    mixture = _mixture(slug)
    if mixture.anchor is None:
        raise Http404("the mixture has no anchor")
    fmt = request.GET.get("as", "safetensors")
    if fmt not in ANCHOR_FORMATS:
        raise Http404(f"no such format: {' or '.join(ANCHOR_FORMATS)}")
    return anchor_response(mixture.anchor, fmt)


@login_required
@require_POST
def mixture_copy(request, slug: str):
    """Copy a mixture (its maintainers): the way to another anchor once it has experts."""
    mixture = get_maintained_mixture(request.user, slug)
    twin = copy_mixture(request.user, mixture)
    messages.success(
        request, f"{twin.name} is open with {mixture.name}'s settings and domains; no experts yet."
    )
    return redirect(twin)
