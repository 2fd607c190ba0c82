"""Registering a base model the workers can load, by reading its config (no weights)."""

from __future__ import annotations

from routing.basemodels import BaseSpec

from ..models import BaseModel


def register_base_model(
    name: str,
    kind: str,
    *,
    revision: str = "",
    licence: str = "apache-2.0",
    fingerprint: str = "",
) -> BaseModel:
    """The BaseModel row of `name` (a Hugging Face id, a local folder or a packaged model),
    created from its config when the hub does not know it yet."""
    existing = BaseModel.objects.filter(name=name).first()
    if existing is not None:
        if fingerprint and not existing.fingerprint:
            BaseModel.objects.filter(pk=existing.pk).update(fingerprint=fingerprint)
            existing.refresh_from_db()
        return existing
    spec = BaseSpec.read(name, revision or None)
    base, _ = BaseModel.objects.get_or_create(
        name=name,
        defaults={
            "kind": kind,
            "revision": revision,
            "hidden_size": spec.hidden_size,
            "num_layers": spec.num_layers,
            "intermediate_size": spec.intermediate_size,
            "q_size": spec.q_size,
            "kv_size": spec.kv_size,
            "fingerprint": fingerprint,
            "licence": licence,
        },
    )
    return base
