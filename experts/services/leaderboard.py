"""The leaderboard's rankings, computed in the database and bounded in size.

A mixture may hold thousands of experts: each domain's board shows its top
rows (or one page of a single domain's board), ranked by held-out score in SQL
(the kind's metric: accuracy, highest first; perplexity, lowest first) and by
measured contribution from the current composition's record, with a fixed
number of queries whatever the number of experts.
"""

from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.db.models import Count, F, FloatField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from ..models import Expert


def _accepted(mixture):
    return (
        Expert.objects.filter(mixture=mixture, status=Expert.Status.ACCEPTED)
        .select_related("owner")
        .only("name", "metrics", "domain_id", "owner__username")
    )


def boards_for(mixture, domains, contributions: dict, *, rows: int, page=None) -> list[dict]:
    """For each domain: its experts by score and by contribution (top `rows`, or page
    `page` of `rows` each), with how many accepted experts it has."""
    kind = mixture.kind_info
    score = (
        F("score").desc(nulls_last=True)
        if kind.higher_is_better
        else F("score").asc(nulls_last=True)
    )
    by_drop = sorted(
        ((pk, c) for pk, c in contributions.items() if c.get("drop") is not None),
        key=lambda item: -item[1]["drop"],
    )
    domain_of = dict(
        Expert.objects.filter(mixture=mixture, status=Expert.Status.ACCEPTED).values_list(
            "pk", "domain_id"
        )
    )
    counts = dict(
        _accepted(mixture)
        .order_by()
        .values("domain_id")
        .annotate(n=Count("pk"))
        .values_list("domain_id", "n")
    )
    boards = []
    wanted: dict[int, list[tuple[int, dict]]] = {}
    for domain in domains:
        ranked = (
            _accepted(mixture)
            .filter(domain=domain)
            .annotate(score=Cast(KT(f"metrics__{kind.metric}"), FloatField()))
            .order_by(score, "pk")
        )
        paginator = Paginator(ranked, rows)
        paginator.count = counts.get(domain.pk, 0)  # counted above for every domain at once
        paged = paginator.get_page(page or 1)
        mine = [(int(pk), c) for pk, c in by_drop if domain_of.get(int(pk)) == domain.pk]
        start = (paged.number - 1) * rows
        wanted[domain.pk] = mine[start : start + rows]
        boards.append({"domain": domain, "page": paged, "by_score": [], "by_contribution": []})
        for expert in paged.object_list:
            boards[-1]["by_score"].append(_row(expert, contributions, kind))
    ids = [pk for chosen in wanted.values() for pk, _ in chosen]
    experts = {e.pk: e for e in _accepted(mixture).filter(pk__in=ids)}
    for board in boards:
        board["by_contribution"] = [
            _row(experts[pk], contributions, kind)
            for pk, _ in wanted[board["domain"].pk]
            if pk in experts
        ]
    return boards


def _row(expert, contributions: dict, kind) -> dict:
    measured = contributions.get(str(expert.pk), {})
    return {
        "expert": expert,
        "score": expert.metrics.get(kind.metric),
        "second": expert.metrics.get(kind.second_metric),
        "drop": measured.get("drop"),
        "share": measured.get("share"),
    }


def score_history(mixture) -> tuple[list[str], dict[str, list[float | None]]]:
    """The held-out score (the kind's metric) per domain over every composition, oldest
    first: versions with different domain sets stay comparable, domain by domain (None
    where a version has no expert for the domain). Reads only the scores."""
    metric = mixture.kind_info.metric
    rows = list(
        mixture.compositions.order_by("version")
        .annotate(scores=KT("metrics__domains"))
        .values_list("version", "scores")
    )
    versions = [f"v{version}" for version, _ in rows]
    per_version = [json.loads(scores) if scores else {} for _, scores in rows]
    names = sorted({name for scores in per_version for name in scores})
    series = {
        name: [scores[name][metric] if name in scores else None for scores in per_version]
        for name in names
    }
    return versions, series
