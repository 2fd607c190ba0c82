"""Pages for mixtures and experts. Views are thin: permission, input, a service, output."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .forms import UploadForm
from .models import Expert, Mixture
from .queries import get_expert, visible_experts, visible_jobs
from .services.upload import UploadError, UploadRequest, accept_upload
from .tasks_api import enqueue_validation


def mixture_list(request):
    mixtures = Mixture.objects.annotate(
        n_domains=Count("domains", distinct=True),
        n_accepted=Count(
            "experts", filter=Q(experts__status=Expert.Status.ACCEPTED), distinct=True
        ),
    ).select_related("base_model")
    for mixture in mixtures:
        mixture.current = mixture.compositions.filter(is_current=True).first()
    return mixtures


def mixture_detail(request, slug: str):
    mixture = get_object_or_404(Mixture.objects.select_related("base_model"), slug=slug)
    experts = visible_experts(request.user).filter(mixture=mixture)
    current = mixture.compositions.filter(is_current=True).first()
    return render(
        request,
        "experts/mixture.html",
        {
            "mixture": mixture,
            "domains": mixture.domains.all(),
            "experts": experts[:100],
            "current": current,
            "compositions": mixture.compositions.all()[:20],
            "is_maintainer": mixture.is_maintainer(request.user),
            "form": UploadForm(mixture=mixture) if request.user.is_authenticated else None,
        },
    )


@login_required
def upload(request, slug: str):
    mixture = get_object_or_404(Mixture, slug=slug)
    if request.method != "POST":
        return redirect(mixture)
    status = 200
    if getattr(request, "upload_too_large", False):
        form = UploadForm(mixture=mixture)
        form.add_error(None, "the file is larger than this hub accepts")
        status = 413
    else:
        form = UploadForm(request.POST, request.FILES, mixture=mixture)
        if form.is_valid():
            data = form.cleaned_data
            try:
                expert = accept_upload(
                    request.user,
                    UploadRequest(
                        mixture=mixture,
                        domain=data["domain"],
                        name=data["name"],
                        description=data["description"],
                        licence=data["licence"],
                        file=data["file"],
                        adapter_config=data["adapter_config"],
                    ),
                    enqueue=enqueue_validation,
                )
            except UploadError as exc:
                form.add_error("file", exc.message)
                status = exc.status
            else:
                messages.success(request, f"Uploaded {expert.name}; validation has been queued.")
                return redirect(expert)
        else:
            status = 400
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
        },
    )


def expert_download(request, pk: int):
    expert = get_expert(request.user, pk)
    if not expert.file:
        raise Http404("no file")
    return FileResponse(
        expert.file.open("rb"),
        as_attachment=True,
        filename=f"{expert.name}-{expert.sha256[:12]}.safetensors",
    )


@login_required
@require_POST
def expert_retire(request, pk: int):
    expert = get_expert(request.user, pk)
    if expert.owner_id != request.user.pk:
        raise Http404("no such expert")
    changed = (
        Expert.objects.filter(pk=expert.pk)
        .exclude(status=Expert.Status.RETIRED)
        .update(status=Expert.Status.RETIRED)
    )
    if changed:
        messages.success(request, f"{expert.name} is retired; it leaves the next composition.")
    return redirect(expert)


def method_not_allowed(request):
    return HttpResponseNotAllowed(["POST"])
