"""The tensor layout of classification experts (format v1): the `head` and `lora` tensors,
their names as PEFT writes them, their shapes against the base model, and what a lora
expert's classifier reads (its pooling)."""

from __future__ import annotations

import re

from ...basemodels import BaseSpec
from ...lora_layout import check_lora_pairs
from ...peft_config import LoraSpec
from ...safetensors_header import ContractError, Header

HEAD_TENSORS = ("head.hidden.weight", "head.hidden.bias", "head.out.weight", "head.out.bias")
MAX_HEAD_HIDDEN = 4096
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


def _module_dims(module: str, spec: BaseSpec) -> tuple[int, int]:
    """(in_features, out_features) of a BERT encoder sub-module."""
    d, i = spec.hidden_size, spec.intermediate_size
    return {"intermediate.dense": (d, i), "output.dense": (i, d)}.get(module, (d, d))


def _check_shape(header: Header, name: str, expected: tuple[int, ...], what: str) -> None:
    if name not in header.tensors:
        raise ContractError("missing_tensor", f"missing tensor {name!r} ({what})")
    shape = header.tensors[name].shape
    if shape != expected:
        raise ContractError(
            "bad_shape",
            f"tensor {name!r} has shape {list(shape)}, expected {list(expected)} ({what})",
        )


def check_head(header: Header, labels: list[str], base: BaseSpec | None) -> int:
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


def check_lora(
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
    check_pooler(header, pooler, hidden, lora)
    check_lora_pairs(header, lora, base, _module_dims)
    return classifier, pooler


def check_pooler(header: Header, pooler: dict[str, str], hidden: int, lora: LoraSpec) -> None:
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
