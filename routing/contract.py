"""The expert file contract, version 1 (docs/expert-format.md).

`check_expert_file` reads only the header and checks it against the contract
and, when given, the mixture's base model and the domain's labels. It is what
the upload validator calls before anything is stored, and what
`python -m routing check` prints.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from safetensors import safe_open

from .base import BaseSpec, same_base
from .safetensors_header import ContractError, Header, parse_json, read_header

FORMAT_VERSION = "1"
KINDS = ("head", "lora")
PREFIX = "moecollab."
KEY_FORMAT = PREFIX + "format_version"
KEY_KIND = PREFIX + "kind"
KEY_BASE = PREFIX + "base_model"
KEY_LABELS = PREFIX + "labels"
KEY_DOMAIN = PREFIX + "domain"
KEY_LORA_R = PREFIX + "lora_r"
KEY_LORA_ALPHA = PREFIX + "lora_alpha"
KEY_LORA_TARGETS = PREFIX + "lora_target_modules"

HEAD_TENSORS = ("head.hidden.weight", "head.hidden.bias", "head.out.weight", "head.out.bias")
MAX_HEAD_HIDDEN = 4096
MAX_LABELS = 1000
MAX_LORA_RANK = 256

# LoRA tensors on a BERT-style encoder, as PEFT names them, with any wrapper
# prefix (`base_model.model.`, `encoder.`, `bert.`) in front.
LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?:[A-Za-z_][A-Za-z0-9_]*\.)?encoder\.layer\.(\d+)\."
    r"(attention\.self\.query|attention\.self\.key|attention\.self\.value|"
    r"attention\.output\.dense|intermediate\.dense|output\.dense)\.lora_([AB])\.weight$"
)
CLASSIFIER_KEY = re.compile(r"^(?:base_model\.model\.)?classifier\.(weight|bias)$")
# BERT's pooler, in a PEFT `SEQ_CLS` adapter: saved whole when `modules_to_save` lists
# "pooler", or as a LoRA pair when a target module ("dense") matches `pooler.dense`.
POOLER_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?:[A-Za-z_][A-Za-z0-9_]*\.)?pooler\.dense\."
    r"(?:(weight|bias)|lora_([AB])\.weight)$"
)

# How a lora expert's classifier reads the adapted encoder's last hidden state.
MEAN = "mean"  # mean over the tokens the attention mask keeps (the project's own experts)
CLS_POOLER = "cls_pooler"  # tanh(pooler.dense(h[CLS])), as BertForSequenceClassification
POOLINGS = (MEAN, CLS_POOLER)
# PEFT task types a classification mixture runs, and the pooling each implies: an adapter
# without a task type wraps the documented mean-pooling module; SEQ_CLS wraps
# AutoModelForSequenceClassification, whose BERT head reads the pooler over [CLS].
PEFT_TASK_POOLING = {None: MEAN, "SEQ_CLS": CLS_POOLER}
# What `modules_to_save` may list per task type: PEFT adds "classifier" and "score" to
# every SEQ_CLS adapter (a BERT model has no "score"); anything else would be a module
# the hub cannot run.
PEFT_MODULES_TO_SAVE = {MEAN: {"classifier"}, CLS_POOLER: {"classifier", "score", "pooler"}}


@dataclass
class LoraSpec:
    r: int
    alpha: float
    target_modules: list[str]
    # canonical name "encoder.layer.{i}.{module}" -> {"A": file key, "B": file key}
    modules: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class ExpertHeader:
    """What a checked expert file declares; enough to load and compose it."""

    kind: str
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


def _module_dims(module: str, spec: BaseSpec) -> tuple[int, int]:
    """(in_features, out_features) of a BERT encoder sub-module."""
    d, i = spec.hidden_size, spec.intermediate_size
    return {"intermediate.dense": (d, i), "output.dense": (i, d)}.get(module, (d, d))


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


def _require(metadata: dict[str, str], key: str) -> str:
    if key not in metadata:
        raise ContractError("missing_metadata", f"__metadata__ lacks the key {key!r}")
    return metadata[key]


def _check_shape(header: Header, name: str, expected: tuple[int, ...], what: str) -> None:
    if name not in header.tensors:
        raise ContractError("missing_tensor", f"missing tensor {name!r} ({what})")
    shape = header.tensors[name].shape
    if shape != expected:
        raise ContractError(
            "bad_shape",
            f"tensor {name!r} has shape {list(shape)}, expected {list(expected)} ({what})",
        )


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


def _check_head(header: Header, labels: list[str], base: BaseSpec | None) -> int:
    unexpected = sorted(set(header.tensors) - set(HEAD_TENSORS))
    if unexpected:
        raise ContractError(
            "unexpected_tensor", f"a head expert has no tensor named {unexpected[0]!r}"
        )
    if "head.hidden.weight" not in header.tensors:
        raise ContractError("missing_tensor", "missing tensor 'head.hidden.weight' (hidden layer)")
    w = header.tensors["head.hidden.weight"].shape
    if len(w) != 2:
        raise ContractError("bad_shape", "tensor 'head.hidden.weight' must be 2-D [hidden, base]")
    hidden, d = w
    if base is not None and d != base.hidden_size:
        raise ContractError(
            "wrong_base_model",
            f"tensor 'head.hidden.weight' reads {d} features but the base model "
            f"{base.name} has hidden size {base.hidden_size}",
        )
    if not 1 <= hidden <= MAX_HEAD_HIDDEN:
        raise ContractError(
            "bad_shape", f"head hidden width {hidden} is outside 1..{MAX_HEAD_HIDDEN}"
        )
    _check_shape(header, "head.hidden.bias", (hidden,), "hidden bias")
    _check_shape(header, "head.out.weight", (len(labels), hidden), "one row per label")
    _check_shape(header, "head.out.bias", (len(labels),), "one bias per label")
    return hidden


def _check_lora(
    header: Header, labels: list[str], base: BaseSpec | None, lora: LoraSpec, pooling: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Check a lora expert's tensors; (classifier keys, pooler keys)."""
    if not 1 <= lora.r <= MAX_LORA_RANK:
        raise ContractError("bad_lora", f"LoRA rank {lora.r} is outside 1..{MAX_LORA_RANK}")
    classifier: dict[str, str] = {}
    pooler: dict[str, str] = {}
    for name in header.tensors:
        m = LORA_KEY.match(name)
        if m:
            layer, module, ab = m.groups()
            canonical = f"encoder.layer.{int(layer)}.{module}"
            slot = lora.modules.setdefault(canonical, {})
            if ab in slot:
                raise ContractError(
                    "duplicate_tensor", f"two tensors hold LoRA {ab} of {canonical}"
                )
            slot[ab] = name
            continue
        m = CLASSIFIER_KEY.match(name)
        if m:
            classifier[m.group(1)] = name
            continue
        m = POOLER_KEY.match(name)
        if m and pooling == CLS_POOLER:
            part = m.group(1) or m.group(2)
            if part in pooler:
                raise ContractError("duplicate_tensor", f"two tensors hold the pooler's {part}")
            pooler[part] = name
            continue
        if m:
            raise ContractError(
                "unexpected_tensor",
                f"{name!r} is BERT's pooler, which only a SEQ_CLS adapter reads; this "
                "expert's classifier reads the mean-pooled encoder output",
            )
        raise ContractError(
            "unexpected_tensor",
            f"a lora expert has no tensor named {name!r} (expected LoRA A/B matrices of the "
            "encoder, classifier.weight/bias and, in a SEQ_CLS adapter, BERT's pooler)",
        )
    if not lora.modules:
        raise ContractError("missing_tensor", "the file holds no LoRA matrices")
    for part in ("weight", "bias"):
        if part not in classifier:
            raise ContractError(
                "missing_tensor",
                f"missing tensor 'classifier.{part}': a lora expert needs a classification "
                "layer over the pooled encoder output",
            )
    hidden = (
        base.hidden_size if base is not None else header.tensors[classifier["weight"]].shape[-1]
    )
    _check_shape(header, classifier["weight"], (len(labels), hidden), "one row per label")
    _check_shape(header, classifier["bias"], (len(labels),), "one bias per label")
    _check_pooler(header, pooler, hidden, lora)
    for canonical, slot in sorted(lora.modules.items()):
        for ab in "AB":
            if ab not in slot:
                raise ContractError("missing_tensor", f"LoRA {ab} of {canonical} is missing")
        module = canonical.split(".", 3)[3]
        if module.split(".")[-1] not in lora.target_modules:
            raise ContractError(
                "bad_lora",
                f"{canonical} is not among the declared target modules {lora.target_modules}",
            )
        layer = int(canonical.split(".")[2])
        a, b = header.tensors[slot["A"]].shape, header.tensors[slot["B"]].shape
        if base is not None:
            if layer >= base.num_layers:
                raise ContractError(
                    "wrong_base_model",
                    f"{canonical}: the base model {base.name} has {base.num_layers} layers",
                )
            fan_in, fan_out = _module_dims(module, base)
        else:
            fan_in, fan_out = a[-1], b[0]
        if a != (lora.r, fan_in):
            raise ContractError(
                "bad_shape" if base is None or a[0] != lora.r else "wrong_base_model",
                f"tensor {slot['A']!r} has shape {list(a)}, expected {[lora.r, fan_in]} "
                f"(rank {lora.r} over the base model's {fan_in} inputs)",
            )
        if b != (fan_out, lora.r):
            raise ContractError(
                "bad_shape" if base is None or b[1] != lora.r else "wrong_base_model",
                f"tensor {slot['B']!r} has shape {list(b)}, expected {[fan_out, lora.r]}",
            )
    return classifier, pooler


def _check_pooler(header: Header, pooler: dict[str, str], hidden: int, lora: LoraSpec) -> None:
    """A SEQ_CLS adapter's own pooler: whole (modules_to_save) or a LoRA pair, not both."""
    whole, pair = {"weight", "bias"} & set(pooler), {"A", "B"} & set(pooler)
    if whole and pair:
        raise ContractError(
            "unexpected_tensor",
            "the file holds the pooler both whole and as LoRA matrices; PEFT saves one of them",
        )
    if whole:
        for part in ("weight", "bias"):
            if part not in pooler:
                raise ContractError("missing_tensor", f"the pooler's {part} is missing")
        _check_shape(header, pooler["weight"], (hidden, hidden), "the pooler's dense layer")
        _check_shape(header, pooler["bias"], (hidden,), "the pooler's bias")
    if pair:
        for ab in "AB":
            if ab not in pooler:
                raise ContractError("missing_tensor", f"LoRA {ab} of pooler.dense is missing")
        if "dense" not in lora.target_modules:
            raise ContractError(
                "bad_lora",
                f"pooler.dense is not among the declared target modules {lora.target_modules}",
            )
        _check_shape(header, pooler["A"], (lora.r, hidden), f"rank {lora.r} over {hidden} inputs")
        _check_shape(header, pooler["B"], (hidden, lora.r), f"{hidden} outputs of rank {lora.r}")


def _lora_from_metadata(metadata: dict[str, str]) -> LoraSpec:
    try:
        r = int(_require(metadata, KEY_LORA_R))
        alpha = float(_require(metadata, KEY_LORA_ALPHA))
        targets = parse_json(
            _require(metadata, KEY_LORA_TARGETS), "bad_lora", f"{KEY_LORA_TARGETS} is not JSON"
        )
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ContractError):
            raise
        raise ContractError("bad_lora", f"invalid LoRA settings in __metadata__: {exc}") from None
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ContractError("bad_lora", f"{KEY_LORA_TARGETS} must be a JSON array of module names")
    return LoraSpec(r=r, alpha=alpha, target_modules=targets)


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
    saved = config.get("modules_to_save") or []
    if isinstance(saved, str):
        saved = [saved]
    if not isinstance(saved, list):
        raise ContractError("bad_lora", "modules_to_save in adapter_config.json must be a list")
    allowed = PEFT_MODULES_TO_SAVE[pooling]
    extra = sorted({str(m) for m in saved} - allowed)
    if extra:
        raise ContractError(
            "bad_lora",
            f"adapter_config.json lists {extra} in modules_to_save; with task_type {task!r} "
            f"the hub runs only {sorted(allowed)} besides the LoRA matrices",
        )
    return pooling


def _lora_from_peft_config(config: dict, base: BaseSpec | None) -> LoraSpec:
    if config.get("peft_type") != "LORA":
        raise ContractError(
            "bad_lora", f"adapter_config.json has peft_type {config.get('peft_type')!r}, not 'LORA'"
        )
    supported = (
        ("use_dora", False),
        ("use_rslora", False),
        ("lora_bias", False),
        ("fan_in_fan_out", False),
        ("bias", "none"),
        ("rank_pattern", {}),
        ("alpha_pattern", {}),
    )
    for key, ok in supported:
        if config.get(key, ok) not in (ok, None):
            raise ContractError(
                "bad_lora",
                f"adapter_config.json sets {key}={config[key]!r}; only {key}={ok!r} is supported",
            )
    named = config.get("base_model_name_or_path")
    if base is not None and named and not same_base(str(named), base.name):
        raise ContractError(
            "wrong_base_model",
            f"the adapter was trained on {named!r}, but this mixture's base model is "
            f"{base.name!r}: train it on {base.name!r} (AutoModel.from_pretrained"
            f"({base.name!r})); if it is that model under another name, set "
            f"base_model_name_or_path in adapter_config.json to {base.name!r}",
        )
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    try:
        return LoraSpec(
            r=int(config["r"]), alpha=float(config["lora_alpha"]), target_modules=list(targets)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ContractError("bad_lora", f"adapter_config.json lacks a valid {exc}") from None


def load_adapter_config(path: str | os.PathLike) -> dict:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError("bad_lora", f"adapter_config.json cannot be read: {exc}") from None
    config = parse_json(text, "bad_lora", "adapter_config.json is not valid JSON")
    if not isinstance(config, dict):
        raise ContractError("bad_lora", "adapter_config.json is not a JSON object")
    return config


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
        if metadata[KEY_FORMAT] != FORMAT_VERSION:
            raise ContractError(
                "bad_version",
                f"{KEY_FORMAT} is {metadata[KEY_FORMAT]!r}; "
                f"this hub reads version {FORMAT_VERSION}",
            )
        kind = _require(metadata, KEY_KIND)
        if kind not in KINDS:
            raise ContractError("bad_kind", f"{KEY_KIND} is {kind!r}; expected one of {KINDS}")
        base_model = _require(metadata, KEY_BASE)
        if base is not None and not same_base(base_model, base.name):
            raise ContractError(
                "wrong_base_model",
                f"the expert was trained on base model {base_model!r}, but this mixture "
                f"uses {base.name!r}: train it again with --base {base.name}",
            )
        expert_labels = _parse_labels(_require(metadata, KEY_LABELS))
        source = "moecollab"
        lora = _lora_from_metadata(metadata) if kind == "lora" else None
        domain = metadata.get(KEY_DOMAIN)
        pooling = MEAN
    else:
        if adapter_config is None:
            beside = Path(path).with_name("adapter_config.json")
            if not look_beside or not beside.exists():
                raise ContractError(
                    "missing_metadata",
                    f"__metadata__ lacks {KEY_FORMAT!r}: write experts with "
                    "`python -m routing train`, or upload a PEFT adapter with its "
                    "adapter_config.json",
                )
            adapter_config = beside
        if not isinstance(adapter_config, dict):
            adapter_config = load_adapter_config(adapter_config)
        if labels is None:
            raise ContractError(
                "missing_labels",
                "a PEFT adapter carries no label names: the domain's labels must be given",
            )
        kind, source, domain = "lora", "peft", None
        lora = _lora_from_peft_config(adapter_config, base)
        pooling = _peft_pooling(adapter_config)
        base_model = (
            base.name
            if base is not None
            else str(adapter_config.get("base_model_name_or_path") or "")
        )
        expert_labels = list(labels)

    _check_labels_against(expert_labels, labels)
    result = ExpertHeader(
        kind=kind,
        base_model=base_model,
        labels=expert_labels,
        domain=domain,
        source=source,
        num_parameters=sum(_numel(t.shape) for t in header.tensors.values()),
        lora=lora,
        pooling=pooling,
        metadata=dict(metadata),
    )
    if kind == "head":
        result.head_hidden = _check_head(header, expert_labels, base)
    else:
        result.classifier_keys, result.pooler_keys = _check_lora(
            header, expert_labels, base, lora, pooling
        )
    return result


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_finite(path: str | os.PathLike) -> None:
    """Load tensors one at a time and reject any NaN or Inf value."""
    import torch

    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            tensor = f.get_tensor(name)
            bad = (~torch.isfinite(tensor)).sum().item()
            if bad:
                raise ContractError(
                    "not_finite", f"tensor {name!r} holds {bad} NaN or infinite values"
                )
