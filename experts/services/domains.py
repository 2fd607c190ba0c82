"""Domain data: the maintainer's file, split into router and held-out eval splits
(deterministically, by `routing.data.split_router_eval`). Contributors never see
evaluation labels; they train on their own data.
"""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.db import transaction

from routing.data import (
    DatasetError,
    DomainData,
    Split,
    split_from_jsonl,
    split_router_eval,
    split_to_jsonl,
)
from routing.kinds import get_kind

from ..models import Domain


def import_domain_data(domain: Domain, examples: Split, *, source: str = "") -> Domain:
    """Replace a domain's data. Its labels become the sorted label set of the data,
    unless the maintainer declared them: then the data may lack some of them but may
    not bring others."""
    router, evaluation = split_router_eval(examples)
    if len(router) == 0 or len(evaluation) == 0:
        raise DatasetError(
            f"{len(examples)} examples are too few to split into router and "
            "evaluation data; give at least 20"
        )
    labels = sorted(set(examples.labels))  # none in a text corpus
    if domain.labels_declared and examples.labels:
        unknown = sorted(set(labels) - set(domain.labels))
        if unknown:
            raise DatasetError(
                f"the data has labels the domain does not declare: {unknown}; the domain's "
                f"labels are {list(domain.labels)} (change them first, or fix the data)"
            )
        labels = list(domain.labels)
    with transaction.atomic():
        storage = domain.router_data.storage
        old_names = [f.name for f in (domain.router_data, domain.eval_data) if f]
        domain.router_data.save("router.jsonl", ContentFile(split_to_jsonl(router)), save=False)
        domain.eval_data.save("eval.jsonl", ContentFile(split_to_jsonl(evaluation)), save=False)
        domain.labels = labels
        domain.router_count, domain.eval_count = len(router), len(evaluation)
        domain.source = source[:200]
        domain.save()
        for name in old_names:
            transaction.on_commit(lambda name=name: storage.delete(name))
    return domain


def data_labels(domain: Domain) -> list[str]:
    """The labels the domain's stored data carries (router and held-out parts)."""
    found: set[str] = set()
    for field in (domain.router_data, domain.eval_data):
        if field:
            found.update(_read(domain, field).labels)
    return sorted(found)


def labels_lacking(domain: Domain) -> list[str]:
    """Declared labels that no held-out example of the domain carries."""
    if not domain.labels:
        return []
    if not domain.eval_data:
        return list(domain.labels)
    present = set(_read(domain, domain.eval_data).labels)
    return [label for label in domain.labels if label not in present]


def import_domain_file(domain: Domain, data: bytes, filename: str) -> Domain:
    """A maintainer's file, read as the mixture's kind reads domain data."""
    examples = get_kind(domain.mixture.kind).read_examples(data, filename)
    return import_domain_data(domain, examples, source=f"upload {filename}")


def _read(domain: Domain, field) -> Split:
    """A stored split: labelled rows, or texts alone where the kind has no labels."""
    with field.open("rb") as f:
        return split_from_jsonl(f.read(), f"{domain} {field.field.name}")


def domain_data(domain: Domain) -> DomainData:
    """The domain as the routing library sees it (no training split: contributors own that)."""
    return DomainData(
        name=domain.name,
        labels=list(domain.labels),
        train=Split([], []),
        router=_read(domain, domain.router_data),
        eval=_read(domain, domain.eval_data),
        description=domain.description,
    )
