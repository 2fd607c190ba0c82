"""What the models share: the private storage, generated file names, a mixture's kind and
its default routing."""

from __future__ import annotations

import uuid

from django.core.files.storage import Storage, default_storage
from django.db import models

from routing.kinds import DEFAULT_KIND, describe
from routing.kinds import choices as kind_choices


def private_storage() -> Storage:
    """The hub's storage (STORAGES["default"]: files under MEDIA_ROOT, or a bucket), which
    no URL serves by itself: downloads go through views that check who asks."""
    return default_storage


def expert_upload_to(instance, filename: str) -> str:
    return f"experts/{uuid.uuid4().hex}.safetensors"


def domain_data_to(instance, filename: str) -> str:
    return f"domains/{uuid.uuid4().hex}.jsonl"


def default_routing() -> dict:
    """The routing settings of a new mixture of the default kind."""
    return describe(DEFAULT_KIND).default_routing()


def default_kind() -> str:
    return DEFAULT_KIND


def kind_field(**options) -> models.CharField:
    """A kind of mixture (`routing.kinds`): its choices are read from the kinds when asked
    for, so a new kind needs no migration."""
    return models.CharField(max_length=30, choices=kind_choices, default=default_kind, **options)
