"""Maintainers' settings for mixtures and domains, shared by the site's forms and the API.

Each function checks one setting and raises `ValueError` with a message a
maintainer can act on; the forms and serializers turn it into a field error.
"""

from __future__ import annotations

import math
import os

from django.conf import settings
from django.db import transaction

from routing.data import MAX_LABEL_CHARS, MAX_LABELS
from routing.kinds import describe

from ..models import Expert, Mixture
from .domains import data_labels
from .uploads import ACTIVE as ACTIVE_EXPERTS


def clean_routing(value, kind: str, mixture: Mixture | None = None) -> dict:
    """A mixture's routing settings, checked against its kind's settings (the config
    dataclasses' bounds) and completed with the defaults, and, for an existing `mixture`,
    against the experts it holds; a ValueError names the setting."""
    info = describe(kind)
    cleaned = info.clean_routing(value)
    if mixture is not None and mixture.pk is not None and mixture.kind == kind:
        experts = Expert.objects.filter(mixture=mixture, status__in=ACTIVE_EXPERTS)
        info.check_routing_for_experts(cleaned, {
            f"{e.name!r} (#{e.pk})": (e.report.get("header") or {}).get("target_modules")
            or (e.adapter_config or {}).get("target_modules") or []
            for e in experts
        })  # fmt: skip
    return cleaned


def clean_tolerance(value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError("the tolerance is between 0 and 1 (what it measures: its help text)")
    return value


def clean_max_upload(value: int) -> int:
    cap = settings.MOECOLLAB_MAX_UPLOAD_BYTES
    if not 1 <= value <= cap:
        raise ValueError(f"a mixture accepts between 1 and {cap:,} bytes (the hub's cap)")
    return value


def clean_repo_id(value: str) -> str:
    """A Hugging Face repository id `namespace/name`, or '' for the hub's default."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    value = value.strip()
    if not value:
        return value
    if value.count("/") != 1:
        raise ValueError(f"{value!r} is not namespace/name")
    try:
        validate_repo_id(value)
    except HFValidationError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    return value


def check_kind(mixture: Mixture | None, kind: str, base) -> None:
    """A mixture's kind matches its base model's, and changes only while it has no experts."""
    if base is not None and base.kind != kind:
        raise ValueError(
            f"the base model {base.name!r} serves {base.get_kind_display().lower()} "
            f"mixtures, not {kind!r} ones"
        )
    if mixture is not None and mixture.pk is not None and mixture.kind != kind:
        if Expert.objects.filter(mixture=mixture).exists():
            raise ValueError("the kind of mixture cannot change once experts were uploaded")


def check_base_change(mixture: Mixture | None, base) -> None:
    """A mixture's base model changes only while no expert was trained on the old one."""
    if mixture is None or mixture.pk is None or mixture.base_model_id == base.pk:
        return
    if Expert.objects.filter(mixture=mixture).exists():
        raise ValueError(
            "the base model cannot change once experts were uploaded for it; "
            "open a new mixture for another base model"
        )


def clean_labels(value) -> list[str]:
    """A domain's declared labels: a list of names, or one string of names separated by
    commas or new lines. Their order is the documented label order."""
    if isinstance(value, str):
        value = [x for line in value.splitlines() for x in line.split(",")]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError("labels must be a list of names")
    labels = [x.strip() for x in value if x.strip()]
    if len(set(labels)) != len(labels):
        raise ValueError("a label is listed twice")
    if not 2 <= len(labels) <= MAX_LABELS:
        raise ValueError(f"a domain has 2 to {MAX_LABELS} labels, not {len(labels)}")
    if any(len(x) > MAX_LABEL_CHARS for x in labels):
        raise ValueError(f"a label is longer than {MAX_LABEL_CHARS} characters")
    return labels


def check_domain_labels(domain, labels: list[str] | None) -> list[str]:
    """The labels a domain will have: the declared ones (None: those of its data, sorted).
    They change only while no expert was uploaded for the domain, and must cover its data."""
    info = domain.mixture.kind_info
    if not info.has_labels:
        if labels:
            raise ValueError(f"a domain of a {info.title.lower()} mixture has no labels")
        return []
    present = data_labels(domain) if domain.pk else []
    new = labels if labels is not None else sorted(present)
    if domain.pk and new != list(domain.labels) and domain.experts.exists():
        raise ValueError(
            "the labels cannot change once experts were uploaded for this domain: "
            "they were trained on the current order"
        )
    missing = sorted(set(present) - set(new))
    if missing:
        raise ValueError(f"the domain's data has labels the list lacks: {missing}")
    return new


def create_mixture(user, mixture: Mixture) -> Mixture:
    """Store a new mixture; its creator maintains it."""
    with transaction.atomic():
        mixture.save()
        mixture.maintainers.add(user)
    return mixture


def free_slug(slug: str) -> str:
    """`slug`, or `slug-2`, `slug-3`... the first that no mixture has."""
    taken = set(Mixture.objects.filter(slug__startswith=slug).values_list("slug", flat=True))
    candidate, n = slug, 1
    while candidate in taken:
        n += 1
        candidate = f"{slug[: 80 - len(str(n)) - 1]}-{n}"
    return candidate


def copy_mixture(user, source: Mixture, *, slug: str = "", name: str = "") -> Mixture:
    """A new mixture with `source`'s base, settings and domains (their data copied, not
    shared: each mixture replaces its own), without its anchor, experts or compositions;
    `user` maintains it. Where a frozen anchor sends a maintainer who wants another."""
    from django.core.files.base import ContentFile

    fields = ("description", "base_model", "kind", "routing", "tolerance", "upload_quota",
              "max_upload_bytes")  # fmt: skip
    saved = []  # stored copies of data files, removed again if the copy fails
    try:
        with transaction.atomic():
            copy = Mixture(
                slug=slug or free_slug(source.slug),
                name=name or f"{source.name} (copy)"[:200],
                **{f: getattr(source, f) for f in fields},
            )
            copy.save()
            copy.maintainers.add(user)
            for domain in source.domains.all():
                twin = copy.domains.create(
                    name=domain.name,
                    description=domain.description,
                    labels=domain.labels,
                    labels_declared=domain.labels_declared,
                    router_count=domain.router_count,
                    eval_count=domain.eval_count,
                    source=domain.source,
                )
                for field in ("router_data", "eval_data"):
                    stored = getattr(domain, field)
                    if stored:
                        with stored.open("rb") as f:
                            target = getattr(twin, field)
                            target.save(os.path.basename(stored.name), ContentFile(f.read()),
                                        save=False)  # fmt: skip
                            saved.append(target)
                twin.save()
    except BaseException:
        for target in saved:
            target.delete(save=False)
        raise
    return copy
