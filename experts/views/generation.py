"""Trying a language-model composition from its page: the prompt box, its scores."""

from __future__ import annotations

import math

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from django_ratelimit.core import get_usage

from ..models import Job, Mixture
from ..queries import get_composition, visible_jobs
from ..services.generation import MAX_PROMPT_CHARS, clean_request
from ..tasks_api import enqueue_generation


def lm_score_rows(metrics: dict, names: list[str], charted: list[int]) -> list[dict]:
    """A language-model composition's perplexity per domain, against the base model's and
    each charted expert's alone (`charted`: gate indices, `names`: theirs)."""
    rows = []
    for domain, m in (metrics.get("domains") or {}).items():
        alone = m.get("experts") or []
        best = min(range(len(alone)), key=lambda k: alone[k]) if alone else None
        rows.append(
            {
                "domain": domain,
                "n": m.get("n"),
                "tokens": m.get("tokens"),
                "perplexity": m.get("perplexity"),
                "base": m.get("base_perplexity"),
                "gain": 1 - m["perplexity"] / m["base_perplexity"]
                if m.get("base_perplexity")
                else math.nan,
                "alone": [alone[k] if k < len(alone) else None for k in charted],
                "best": alone[best] if best is not None else None,
            }
        )
    return rows


def try_context(request, composition) -> dict:
    """What the prompt box shows: limits, and the user's generation named by `?job=`."""
    job = None
    if request.user.is_authenticated and request.GET.get("job", "").isdigit():
        job = (
            visible_jobs(request.user)
            .filter(pk=int(request.GET["job"]), composition=composition, kind=Job.Kind.GENERATE)
            .first()
        )
    return {
        "max_prompt": MAX_PROMPT_CHARS,
        "max_new_tokens": settings.MOECOLLAB_MAX_NEW_TOKENS,
        "job": job,
    }


@login_required
@require_POST
def composition_generate(request, slug: str, version: int):
    """The prompt box without JavaScript: queue the generation, then show its live status."""
    composition = get_composition(slug, version)
    if composition.mixture.task_type != Mixture.Task.CAUSAL_LM:
        messages.error(request, "This composition classifies texts; it does not generate.")
        return redirect(composition)
    usage = get_usage(
        request,
        group="generate",
        key="user",
        rate=settings.MOECOLLAB_GENERATE_RATE,
        method="POST",
        increment=True,
    )
    if usage and usage["should_limit"]:
        messages.error(request, f"Too many generations; try again in {usage['time_left']} s.")
        return redirect(f"{composition.get_absolute_url()}#try")
    data = {k: v for k, v in request.POST.items() if v != "" and k != "csrfmiddlewaretoken"}
    data["do_sample"] = "do_sample" in request.POST
    try:
        ask = clean_request(data)
    except ValueError as exc:
        messages.error(request, f"Nothing generated: {exc}.")
        return redirect(f"{composition.get_absolute_url()}#try")
    job = enqueue_generation(composition, request.user, ask)
    return redirect(f"{composition.get_absolute_url()}?job={job.pk}#try")
