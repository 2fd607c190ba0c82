"""The one place that decides what a user may see. What they may not see is a 404."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from .models import Composition, Expert, Job, Mixture


def maintained_mixture_ids(user) -> list[int]:
    if not user.is_authenticated:
        return []
    if user.is_staff:
        return list(Mixture.objects.values_list("pk", flat=True))
    return list(user.maintained_mixtures.values_list("pk", flat=True))


def visible_experts(user) -> QuerySet[Expert]:
    """Accepted experts are public; the rest only to their owner and the mixture's maintainers."""
    qs = Expert.objects.select_related("owner", "mixture", "domain")
    public = Q(status=Expert.Status.ACCEPTED)
    if not user.is_authenticated:
        return qs.filter(public)
    return qs.filter(public | Q(owner=user) | Q(mixture_id__in=maintained_mixture_ids(user)))


def visible_jobs(user) -> QuerySet[Job]:
    """Jobs of experts the user may see and of mixtures they maintain, and the generations
    they asked for themselves (another user's prompt is theirs alone)."""
    experts = visible_experts(user).values("pk")
    maintained = maintained_mixture_ids(user)
    mine = Q(requested_by=user) if user.is_authenticated else Q(pk__in=[])
    theirs = Q(action=Job.Action.GENERATE) & ~mine
    return (
        Job.objects.filter(Q(expert__in=experts) | Q(mixture_id__in=maintained) | mine)
        .exclude(theirs)
        .distinct()
    )


def get_expert(user, pk: int) -> Expert:
    try:
        return visible_experts(user).get(pk=pk)
    except Expert.DoesNotExist:
        raise Http404("no such expert") from None


def get_maintained_mixture(user, slug: str) -> Mixture:
    """A mixture the user maintains; any other mixture answers 404."""
    mixture = Mixture.objects.filter(slug=slug).first()
    if mixture is None or not mixture.is_maintainer(user):
        raise Http404("no such mixture")
    return mixture


def get_composition(slug: str, version: int) -> Composition:
    try:
        return Composition.objects.select_related("mixture").get(
            mixture__slug=slug, version=version
        )
    except Composition.DoesNotExist:
        raise Http404("no such composition") from None
