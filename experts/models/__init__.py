"""Mixtures, domains, anchors, experts, compositions and jobs (one module each group)."""

from .anchors import Anchor, anchor_upload_to
from .compositions import Composition, CompositionQuerySet, Job, ScheduledRun
from .experts import Expert
from .fields import (
    default_kind,
    default_routing,
    domain_data_to,
    expert_upload_to,
    kind_field,
    private_storage,
)
from .mixtures import BaseModel, Domain, Mixture

__all__ = [
    "Anchor",
    "BaseModel",
    "Composition",
    "CompositionQuerySet",
    "Domain",
    "Expert",
    "Job",
    "Mixture",
    "ScheduledRun",
    "anchor_upload_to",
    "default_kind",
    "default_routing",
    "domain_data_to",
    "expert_upload_to",
    "kind_field",
    "private_storage",
]
