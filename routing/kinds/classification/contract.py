"""The classification expert file contract, version 1 (docs/expert-format.md).

`check_expert_file` reads only the header and checks it against the contract
and, when given, the mixture's base model and the domain's labels. It is what
the upload validator calls before anything is stored, and what
`python -m routing check` prints.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ...basemodels import BaseSpec, same_base
from ...data import MAX_LABELS
from ...expert_metadata import (
    KEY_BASE,
    KEY_DOMAIN,
    KEY_FORMAT,
    KEY_KIND,
    KEY_LABELS,
    lora_from_metadata,
    require,
)
from ...peft_config import LoraSpec, adapter_config_for, lora_from_peft_config, modules_to_save
from ...safetensors_header import ContractError, parse_json, read_header
from .info import INFO
from .layout import CLS_POOLER, MEAN, check_head, check_lora

EXPERT_FORMAT_VERSION = str(INFO.expert_format_version)  # "1"
ARCHITECTURES = ("head", "lora")  # what the file metadata calls its "kind"

# PEFT task types a classification mixture runs, and the pooling each implies: an adapter
# without a task type wraps the documented mean-pooling module; SEQ_CLS wraps
# AutoModelForSequenceClassification, whose BERT head reads the pooler over [CLS].
PEFT_TASK_POOLING = {None: MEAN, "SEQ_CLS": CLS_POOLER}
# What `modules_to_save` may list per task type: PEFT adds "classifier" and "score" to
# every SEQ_CLS adapter (a BERT model has no "score"); anything else would be a module
# the hub cannot run.
PEFT_MODULES_TO_SAVE = {MEAN: {"classifier"}, CLS_POOLER: {"classifier", "score", "pooler"}}


@dataclass
class ExpertHeader:
    """What a checked expert file declares; enough to load and compose it."""

    architecture: str  # head or lora (the metadata key moecollab.kind)
    base_model: str
    labels: list[str]
    domain: str | None
    source: str  # "moecollab" or "peft"
    num_parameters: int
    head_hidden: int | None = None
    lora: LoraSpec | None = None
    classifier_keys: dict[str, str] = field(default_factory=dict)  # "weight"/"bias" -> key
    pooling: str = MEAN  # lora experts: what the classifier reads (POOLINGS)
    # cls_pooler: the file's own pooler, "weight"/"bias" (whole) or "A"/"B" (LoRA) -> key;
    # empty when the classifier reads the base model's pooler unchanged
    pooler_keys: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def _parse_labels(raw: str) -> list[str]:
    labels = parse_json(
        raw, "bad_labels", f"{KEY_LABELS} must be a JSON array of strings, got {raw[:80]!r}"
    )
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise ContractError("bad_labels", f"{KEY_LABELS} must be a JSON array of non-empty strings")
    if len(set(labels)) != len(labels):
        raise ContractError("bad_labels", f"{KEY_LABELS} lists a label twice")
    if not 2 <= len(labels) <= MAX_LABELS:
        raise ContractError("bad_labels", f"{KEY_LABELS} must have 2..{MAX_LABELS} labels")
    return labels


def _check_labels_against(labels: list[str], domain_labels: list[str] | None) -> None:
    if domain_labels is None:
        return
    missing = [x for x in domain_labels if x not in labels]
    extra = [x for x in labels if x not in domain_labels]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unknown {extra}")
        raise ContractError(
            "wrong_labels",
            f"the expert's labels do not match the domain's labels {domain_labels}: "
            + "; ".join(parts),
        )


def _peft_pooling(config: dict) -> str:
    """What the adapter's classifier reads, from its task type and modules_to_save."""
    task = config.get("task_type") or None
    if task not in PEFT_TASK_POOLING:
        raise ContractError(
            "bad_task_type",
            f"adapter_config.json has task_type {task!r}; a classification mixture runs "
            "SEQ_CLS adapters (AutoModelForSequenceClassification on the base model) and "
            "adapters without a task type around the documented mean-pooling classifier",
        )
    pooling = PEFT_TASK_POOLING[task]
    allowed = PEFT_MODULES_TO_SAVE[pooling]
    extra = sorted(set(modules_to_save(config)) - allowed)
    if extra:
        raise ContractError(
            "bad_lora",
            f"adapter_config.json lists {extra} in modules_to_save; with task_type {task!r} "
            f"the hub runs only {sorted(allowed)} besides the LoRA matrices",
        )
    return pooling


def check_expert_file(
    path: str | os.PathLike,
    *,
    base: BaseSpec | None = None,
    labels: list[str] | None = None,
    adapter_config: dict | str | os.PathLike | None = None,
    look_beside: bool = True,
) -> ExpertHeader:
    """Check an expert file's header against the contract; return what it declares.

    `base` is the mixture's base model and `labels` the domain's labels in
    their documented order; when given, the file must match them. A PEFT
    adapter (no `moecollab.*` metadata) needs `adapter_config` (a dict or the
    path of `adapter_config.json`, default: the file beside it unless
    `look_beside` is false) and takes its labels from `labels`.
    """
    header = read_header(path)
    metadata = header.metadata
    if KEY_FORMAT in metadata:
        if metadata[KEY_FORMAT] != EXPERT_FORMAT_VERSION:
            raise ContractError(
                "bad_version",
                f"{KEY_FORMAT} is {metadata[KEY_FORMAT]!r}; "
                f"this hub reads version {EXPERT_FORMAT_VERSION}",
            )
        architecture = require(metadata, KEY_KIND)
        if architecture not in ARCHITECTURES:
            raise ContractError(
                "bad_kind", f"{KEY_KIND} is {architecture!r}; expected one of {ARCHITECTURES}"
            )
        base_model = require(metadata, KEY_BASE)
        if base is not None and not same_base(base_model, base.name):
            raise ContractError(
                "wrong_base_model",
                f"the expert was trained on base model {base_model!r}, but this mixture "
                f"uses {base.name!r}: train it again with --base {base.name}",
            )
        expert_labels = _parse_labels(require(metadata, KEY_LABELS))
        source = "moecollab"
        lora = lora_from_metadata(metadata) if architecture == "lora" else None
        domain = metadata.get(KEY_DOMAIN)
        pooling = MEAN
    else:
        adapter_config = adapter_config_for(
            path,
            adapter_config,
            look_beside=look_beside,
            train_command="python -m routing train",
            missing_key=KEY_FORMAT,
        )
        if labels is None:
            raise ContractError(
                "missing_labels",
                "a PEFT adapter carries no label names: the domain's labels must be given",
            )
        architecture, source, domain = "lora", "peft", None
        lora = lora_from_peft_config(adapter_config, base)
        pooling = _peft_pooling(adapter_config)
        base_model = (
            base.name
            if base is not None
            else str(adapter_config.get("base_model_name_or_path") or "")
        )
        expert_labels = list(labels)

    _check_labels_against(expert_labels, labels)
    result = ExpertHeader(
        architecture=architecture,
        base_model=base_model,
        labels=expert_labels,
        domain=domain,
        source=source,
        num_parameters=sum(math.prod(t.shape) for t in header.tensors.values()),
        lora=lora,
        pooling=pooling,
        metadata=dict(metadata),
    )
    if architecture == "head":
        result.head_hidden = check_head(header, expert_labels, base)
    else:
        result.classifier_keys, result.pooler_keys = check_lora(
            header, expert_labels, base, lora, pooling
        )
    return result
