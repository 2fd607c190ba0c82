"""Pages for mixtures and experts. Views are thin: permission, input, a service, output."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.db.models.fields.json import KT
from django.http import FileResponse, Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .forms import HubSettingsForm, UploadForm
from .models import Composition, Expert, Mixture
from .queries import get_expert, get_maintained_mixture, visible_experts, visible_jobs
from .services.publish import hub_configured, repo_id_for
from .services.upload import UploadError, UploadRequest, accept_upload, too_large
from .tasks_api import enqueue_validation


def mixture_list(request):
    mixtures = list(
        Mixture.objects.annotate(
            n_domains=Count("domains", distinct=True),
            n_accepted=Count(
                "experts", filter=Q(experts__status=Expert.Status.ACCEPTED), distinct=True
            ),
        ).select_related("base_model")
    )
    current = {
        c.mixture_id: c
        for c in Composition.objects.filter(
            is_current=True, mixture_id__in=[m.pk for m in mixtures]
        )
        .only("mixture_id", "version")
        .annotate(overall_accuracy=KT("metrics__overall__accuracy"))
    }
    for mixture in mixtures:
        mixture.current = current.get(mixture.pk)
    return mixtures


MIXTURE_EXPERTS = 50  # the newest, on the mixture page; the leaderboard ranks them all


def mixture_detail(request, slug: str):
    mixture = get_object_or_404(Mixture.objects.select_related("base_model"), slug=slug)
    experts = visible_experts(request.user).filter(mixture=mixture)
    shown = list(experts.defer("report", "adapter_config")[: MIXTURE_EXPERTS + 1])
    light = mixture.compositions.defer("metrics", "contributions", "expert_shas")
    current = light.filter(is_current=True).first()
    hub_repo = repo_id_for(mixture)
    return render(
        request,
        "experts/mixture.html",
        {
            "mixture": mixture,
            "domains": mixture.domains.all(),
            "experts": shown[:MIXTURE_EXPERTS],
            "more_experts": len(shown) > MIXTURE_EXPERTS,
            "current": current,
            "compositions": light[:20],
            "is_maintainer": mixture.is_maintainer(request.user),
            "form": UploadForm(mixture=mixture) if request.user.is_authenticated else None,
            "hub_form": HubSettingsForm(instance=mixture, default_repo=hub_repo),
            "hub_repo": hub_repo,
            "hub_configured": hub_configured(),
        },
    )


@login_required
@require_POST
def mixture_hub_settings(request, slug: str):
    mixture = get_maintained_mixture(request.user, slug)
    form = HubSettingsForm(request.POST, instance=mixture)
    if form.is_valid():
        form.save()
        messages.success(request, "Hub publishing settings saved.")
    else:
        problems = "; ".join(e for errors in form.errors.values() for e in errors)
        messages.error(request, f"Nothing saved: {problems}")
    return redirect(mixture)


@login_required
def upload(request, slug: str):
    mixture = get_object_or_404(Mixture, slug=slug)
    if request.method != "POST":
        return redirect(mixture)
    status = 200
    files = request.FILES  # parses the body; the upload handler flags an oversize file
    if getattr(request, "upload_too_large", False):
        form = UploadForm(request.POST, mixture=mixture)
        form.full_clean()
        form.errors.pop("file", None)  # not "required": it was sent, and stopped
        refusal = too_large()
        form.add_error("file", refusal.message)
        status = refusal.status
    else:
        form = UploadForm(request.POST, files, mixture=mixture)
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


BOARD_ROWS = 10  # per domain on the leaderboard; one domain's page shows them all, paged
BOARD_PAGE = 50


def leaderboard(request, slug: str):
    from hub.charts import lines

    from .services.leaderboard import boards_for, score_history

    mixture = get_object_or_404(Mixture, slug=slug)
    versions, per_domain = score_history(mixture)
    current = mixture.compositions.filter(is_current=True).only("version", "contributions").first()
    one = request.GET.get("domain")
    domains = mixture.domains.all()
    if one is not None:
        domains = domains.filter(name=one)
        if not domains:
            raise Http404("no such domain")
    boards = boards_for(
        mixture,
        list(domains),
        (current.contributions if current else {}) or {},
        rows=BOARD_ROWS if one is None else BOARD_PAGE,
        page=request.GET.get("page") if one is not None else None,
    )
    return render(
        request,
        "experts/leaderboard.html",
        {
            "mixture": mixture,
            "boards": boards,
            "current": current,
            "one_domain": one,
            "chart": lines(
                per_domain, versions, "Held-out accuracy per domain by composition version"
            ),
        },
    )


@login_required
def review_queue(request):
    from .queries import maintained_mixture_ids

    mixtures = maintained_mixture_ids(request.user)
    if not mixtures:
        raise Http404("no review queue")
    from django.core.paginator import Paginator

    pending = (
        Expert.objects.filter(mixture_id__in=mixtures)
        .exclude(status__in=[Expert.Status.ACCEPTED, Expert.Status.RETIRED])
        .select_related("owner", "mixture", "domain")
        .defer("report", "adapter_config")
    )
    page = Paginator(pending, 50).get_page(request.GET.get("page"))
    return render(request, "experts/review.html", {"experts": page.object_list, "page": page})


@login_required
def domain_data_upload(request, slug: str, name: str):
    from routing.data import DatasetError

    from .forms import DomainDataForm
    from .services.domains import import_domain_file

    mixture = get_maintained_mixture(request.user, slug)
    domain = get_object_or_404(mixture.domains, name=name)
    form = DomainDataForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            f = form.cleaned_data["file"]
            try:
                import_domain_file(domain, f.read(), f.name)
            except DatasetError as exc:
                form.add_error("file", str(exc))
                status = 400
            else:
                messages.success(
                    request,
                    f"{domain.name}: {domain.router_count} router and "
                    f"{domain.eval_count} held-out examples.",
                )
                return redirect(mixture)
        else:
            status = 400
    return render(
        request,
        "experts/domain_data.html",
        {"mixture": mixture, "domain": domain, "form": form},
        status=status,
    )


def expert_status(request, pk: int):
    """Status and latest job of an expert, for the page's live refresh."""
    from django.http import JsonResponse

    expert = get_expert(request.user, pk)
    job = expert.jobs.order_by("-created_at").first()
    return JsonResponse(
        {
            "status": expert.status,
            "final": expert.status
            in (
                Expert.Status.ACCEPTED,
                Expert.Status.REJECTED,
                Expert.Status.FAILED,
                Expert.Status.RETIRED,
            ),
            "job": None
            if job is None
            else {
                "kind": job.kind,
                "status": job.status,
                "progress": job.progress,
                "message": job.message,
                "error": job.error,
            },
            "metrics": expert.metrics,
        }
    )


@login_required
def domain_create(request, slug: str):
    from .forms import DomainForm

    mixture = get_maintained_mixture(request.user, slug)
    form = DomainForm(request.POST or None, mixture=mixture)
    if request.method == "POST" and form.is_valid():
        domain = form.save()
        messages.success(request, f"Domain {domain.name} created; now upload its data.")
        return redirect("domain-data", slug=mixture.slug, name=domain.name)
    return render(
        request,
        "experts/domain_form.html",
        {"mixture": mixture, "form": form},
        status=400 if form.errors else 200,
    )


@login_required
def domain_edit(request, slug: str, name: str):
    from .forms import DomainForm
    from .services.domains import labels_lacking

    mixture = get_maintained_mixture(request.user, slug)
    domain = get_object_or_404(mixture.domains, name=name)
    form = DomainForm(request.POST or None, instance=domain, mixture=mixture)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Domain {domain.name} saved.")
        return redirect(mixture)
    return render(
        request,
        "experts/domain_form.html",
        {"mixture": mixture, "domain": domain, "form": form, "lacking": labels_lacking(domain)},
        status=400 if form.errors else 200,
    )


@login_required
def mixture_create(request):
    from .forms import MixtureForm
    from .services.mixtures import create_mixture

    form = MixtureForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        mixture = create_mixture(request.user, form.save(commit=False))
        messages.success(request, f"{mixture.name} is open; add its first domain.")
        return redirect("domain-create", slug=mixture.slug)
    return render(
        request, "experts/mixture_form.html", {"form": form}, status=400 if form.errors else 200
    )


@login_required
def mixture_settings(request, slug: str):
    from .forms import MixtureForm

    mixture = get_maintained_mixture(request.user, slug)
    form = MixtureForm(request.POST or None, instance=mixture)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Settings saved; the next retrain uses them.")
        return redirect(mixture)
    return render(
        request,
        "experts/mixture_form.html",
        {"form": form, "mixture": mixture},
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
def mixture_retrain(request, slug: str):
    from .tasks_api import enqueue_retrain

    mixture = get_maintained_mixture(request.user, slug)
    enqueue_retrain(mixture)
    messages.success(request, "A retrain is queued; the new composition appears here.")
    return redirect(mixture)
