"""Trying a language-model composition from its page: the prompt box, its scores."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from django_ratelimit.core import get_usage

from ..models import Job
from ..queries import get_composition, visible_jobs
from ..services.generation import MAX_PROMPT_CHARS, clean_request, enqueue_generation

NOT_GENERATING = "This composition does not generate text: its mixture's kind has no Try-it."


def try_context(request, composition) -> dict:
    """What the prompt box shows: limits, and the user's generation named by `?job=`."""
    job = None
    if request.user.is_authenticated and request.GET.get("job", "").isdigit():
        job = (
            visible_jobs(request.user)
            .filter(pk=int(request.GET["job"]), composition=composition, action=Job.Action.GENERATE)
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
    if not composition.mixture.kind_info.generates:
        messages.error(request, NOT_GENERATING)
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
