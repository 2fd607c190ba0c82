"""Maintainers' settings for mixtures and domains, shared by the site's forms and the API.

Each function checks one setting and raises `ValueError` with a message a
maintainer can act on; the forms and serializers turn it into a field error.
"""

from __future__ import annotations

import math
from dataclasses import fields

from django.conf import settings
from django.db import transaction

from routing.config import (
    GATE_FEATURES,
    ClassifierRouting,
    GateConfig,
    LMRouting,
    LossWeights,
    from_dict,
    to_dict,
)

from ..models import Expert, Mixture
from .domains import data_labels

ROUTING_KEYS = ("gate", "loss", "seed", "lm", "classifier")
LM_ROUTERS = ("learned", "centroid", "prefix-likelihood")
LM_MIXINGS = ("mix", "merge")
MAX_PREFIX_TOKENS = 120  # a text is scored on its tokens after the prefix, up to 128
# The smallest value each routing setting may take (None: any finite number).
GATE_MINIMUM = {"hidden": 0, "temperature": None, "top_k": 1, "train_top_k": 0, "noise_std": 0}
MAX_LABELS = 1000


def _number(where: str, value, kind: type, minimum) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, not {value!r}")
    if kind is int and (not isinstance(value, int) and not float(value).is_integer()):
        raise ValueError(f"{where} must be a whole number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite")
    if minimum is not None and value < minimum:
        raise ValueError(f"{where} must be at least {minimum}, not {value!r}")
    return kind(value)


def clean_routing(value, task_type: str = "classification") -> dict:
    """A mixture's routing settings, checked and completed with the defaults:
    {"gate": GateConfig fields, "loss": LossWeights fields, "seed": int}, and for a
    language-model mixture {"lm": LMRouting fields} (its gate is top-1 by default), for a
    classification mixture {"classifier": ClassifierRouting fields}."""
    if not isinstance(value, dict):
        raise ValueError("routing must be an object with the keys gate, loss and seed")
    if task_type == "causal-lm":
        value = {**value, "gate": {"top_k": 1, **(value.get("gate") or {})}}
        if "classifier" in value:
            raise ValueError("routing.classifier is for classification mixtures only")
    elif "lm" in value:
        raise ValueError("routing.lm is for language-model mixtures only")
    unknown = sorted(set(value) - set(ROUTING_KEYS))
    if unknown:
        raise ValueError(f"routing has unknown keys {unknown}; known: {list(ROUTING_KEYS)}")
    parts = {}
    for key, cls in (("gate", GateConfig), ("loss", LossWeights)):
        given = value.get(key) or {}
        if not isinstance(given, dict):
            raise ValueError(f"routing.{key} must be an object")
        try:
            config = from_dict(cls, given)
        except ValueError as exc:
            raise ValueError(f"routing.{key}: {exc}") from None
        for f in fields(cls):
            kind = int if f.type in ("int", int) else float
            minimum = GATE_MINIMUM.get(f.name) if cls is GateConfig else 0
            checked = _number(f"routing.{key}.{f.name}", getattr(config, f.name), kind, minimum)
            setattr(config, f.name, checked)
        if cls is GateConfig and config.temperature <= 0:
            raise ValueError("routing.gate.temperature must be above 0")
        parts[key] = to_dict(config)
    parts["seed"] = _number("routing.seed", value.get("seed", 0), int, 0)
    if task_type == "causal-lm":
        parts["lm"] = _clean_lm(value.get("lm") or {})
    else:
        parts["classifier"] = _clean_classifier(value.get("classifier") or {})
    return parts


def classifier_routing(routing: dict | None) -> ClassifierRouting:
    """A classification mixture's `routing.classifier`, with today's defaults for a mixture
    saved before it existed."""
    return from_dict(ClassifierRouting, (routing or {}).get("classifier"))


def _clean_classifier(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError("routing.classifier must be an object")
    try:
        options = to_dict(from_dict(ClassifierRouting, value))
    except ValueError as exc:
        raise ValueError(f"routing.classifier: {exc}") from None
    for name, given in options.items():
        if name == "gate_features":
            if given not in GATE_FEATURES:
                raise ValueError(
                    f"routing.classifier.gate_features must be one of {list(GATE_FEATURES)}"
                )
        elif not isinstance(given, bool):
            raise ValueError(f"routing.classifier.{name} must be true or false, not {given!r}")
    return options


def _clean_lm(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError("routing.lm must be an object")
    try:
        lm = from_dict(LMRouting, value)
    except ValueError as exc:
        raise ValueError(f"routing.lm: {exc}") from None
    lm.prefix_tokens = _number("routing.lm.prefix_tokens", lm.prefix_tokens, int, 1)
    if lm.prefix_tokens > MAX_PREFIX_TOKENS:
        raise ValueError(f"routing.lm.prefix_tokens must be at most {MAX_PREFIX_TOKENS}")
    lm.layer = _number("routing.lm.layer", lm.layer, int, None)
    if lm.router not in LM_ROUTERS:
        raise ValueError(f"routing.lm.router must be one of {list(LM_ROUTERS)}")
    if lm.mixing not in LM_MIXINGS:
        raise ValueError(f"routing.lm.mixing must be one of {list(LM_MIXINGS)}")
    return to_dict(lm)


def clean_tolerance(value: float) -> float:
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError("the tolerance is an accuracy drop between 0 and 1")
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


def check_kind(mixture: Mixture | None, task_type: str, base) -> None:
    """A mixture's kind matches its base model's, and changes only while it has no experts."""
    if base is not None and base.task_type != task_type:
        raise ValueError(
            f"the base model {base.name!r} serves {base.get_task_type_display().lower()} "
            f"mixtures, not {task_type!r} ones"
        )
    if mixture is not None and mixture.pk is not None and mixture.task_type != task_type:
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
    if any(len(x) > 100 for x in labels):
        raise ValueError("a label is longer than 100 characters")
    return labels


def check_domain_labels(domain, labels: list[str] | None) -> list[str]:
    """The labels a domain will have: the declared ones (None: those of its data, sorted).
    They change only while no expert was uploaded for the domain, and must cover its data."""
    if domain.mixture.task_type == "causal-lm":
        if labels:
            raise ValueError("a language-model domain is text: it has no labels")
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
