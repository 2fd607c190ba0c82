"""Mixture pages: the mixture, its settings and Hub settings, leaderboard, review queue."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.db.models.fields.json import KeyTransform
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..charts import lines
from ..forms import HubSettingsForm, MixtureForm, UploadForm
from ..models import Composition, Expert, Mixture
from ..queries import get_maintained_mixture, maintained_mixture_ids, visible_experts
from ..services.compositions import enqueue_retrain
from ..services.exports import repo_id_for
from ..services.leaderboard import boards_for, score_history
from ..services.mixtures import create_mixture
from ..services.publishing import hub_configured

MIXTURE_EXPERTS = 50  # the newest, on the mixture page; the leaderboard ranks them all
BOARD_ROWS = 10  # per domain on the leaderboard; one domain's page shows them all, paged
BOARD_PAGE = 50


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
        for c in Composition.objects.current()
        .filter(mixture_id__in=[m.pk for m in mixtures])
        .only("mixture_id", "version")
        .annotate(overall=KeyTransform("overall", "metrics"))
    }
    for mixture in mixtures:
        mixture.current = current.get(mixture.pk)
        if mixture.current is not None:  # in the kind's metric
            mixture.current.score = mixture.kind_info.overall({"overall": mixture.current.overall})
    return mixtures


def mixture_detail(request, slug: str):
    mixture = get_object_or_404(Mixture.objects.select_related("base_model", "anchor"), slug=slug)
    experts = visible_experts(request.user).filter(mixture=mixture)
    shown = list(experts.defer("report", "adapter_config")[: MIXTURE_EXPERTS + 1])
    light = mixture.compositions.defer("metrics", "contributions", "expert_shas")
    hub_repo = repo_id_for(mixture)
    kind = mixture.kind_info
    contract = kind.expert_contract(mixture.base_spec(), mixture.routing)
    for expert in shown:
        expert.score = expert.metrics.get(kind.metric)
    return render(
        request,
        "experts/mixture.html",
        {
            "mixture": mixture,
            "domains": mixture.domains.all(),
            "experts": shown[:MIXTURE_EXPERTS],
            "more_experts": len(shown) > MIXTURE_EXPERTS,
            "current": light.current().first(),
            "compositions": light[:20],
            "is_maintainer": mixture.is_maintainer(request.user),
            "form": UploadForm(mixture=mixture) if request.user.is_authenticated else None,
            "hub_form": HubSettingsForm(instance=mixture, default_repo=hub_repo),
            "hub_repo": hub_repo,
            "hub_configured": hub_configured(),
            "kind": kind,
            "acceptance": kind.acceptance(mixture.tolerance),
            "contract": contract,
            **kind.page_context(
                mixture.routing,
                mixture.base_model.name,
                contract=contract,
                anchor_url=request.build_absolute_uri(
                    reverse("anchor-download", args=[mixture.slug]) + "?as=peft"
                ),
            ),
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


def leaderboard(request, slug: str):
    mixture = get_object_or_404(Mixture, slug=slug)
    versions, per_domain = score_history(mixture)
    current = mixture.compositions.current().only("version", "contributions").first()
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
            "kind": mixture.kind_info,
            "chart": lines(
                per_domain,
                versions,
                f"Held-out {mixture.kind_info.metric} per domain by composition version",
            ),
        },
    )


@login_required
def review_queue(request):
    mixtures = maintained_mixture_ids(request.user)
    if not mixtures:
        raise Http404("no review queue")
    pending = (
        Expert.objects.filter(mixture_id__in=mixtures)
        .exclude(status__in=[Expert.Status.ACCEPTED, Expert.Status.RETIRED])
        .select_related("owner", "mixture", "domain")
        .defer("report", "adapter_config")
    )
    page = Paginator(pending, 50).get_page(request.GET.get("page"))
    return render(request, "experts/review.html", {"experts": page.object_list, "page": page})


@login_required
def mixture_create(request):
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
    mixture = get_maintained_mixture(request.user, slug)
    enqueue_retrain(mixture)
    messages.success(request, "A retrain is queued; the new composition appears here.")
    return redirect(mixture)
