"""The language-model expert contract, format version 2 (docs/expert-format.md).

`check_lm_expert` reads only the header. A native file declares its format, task,
base model (and the fingerprint of the weights it was trained on) and LoRA settings
in its metadata; a plain PEFT adapter (`task_type` CAUSAL_LM) comes with its
`adapter_config.json`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ...basemodels import BaseSpec, same_base
from ...expert_metadata import (
    KEY_ANCHOR,
    KEY_BASE,
    KEY_BASE_FINGERPRINT,
    KEY_DOMAIN,
    KEY_FORMAT,
    KEY_KIND,
    KEY_ROLE,
    KEY_TASK,
    lora_from_metadata,
    require,
)
from ...peft_config import LoraSpec, adapter_config_for, lora_from_peft_config, modules_to_save
from ...safetensors_header import ContractError, read_header
from .info import INFO
from .layout import (
    MLP_PROJECTIONS,
    PEFT_ANCHOR_KEY,
    ROUTER_MEAN,
    ROUTER_MSQ,
    check_lora_tensors,
    check_router_stats,
)

LM_FORMAT_VERSION = str(INFO.expert_format_version)  # "2"
TASK = "causal-lm"


@dataclass
class LMExpertHeader:
    """What a checked language-model expert file declares."""

    base_model: str
    base_fingerprint: str  # "" when the file does not say (a PEFT adapter)
    domain: str | None
    source: str  # "moecollab" or "peft"
    num_parameters: int
    lora: LoraSpec
    metadata: dict[str, str] = field(default_factory=dict)
    architecture: str = "lora"
    labels: list[str] = field(default_factory=list)  # a language model has none
    anchor: str = ""  # the sha256 of the anchor it was trained on ("": none, or not said)
    role: str = "expert"  # or "anchor": a mixture's anchor adapter
    router_stats: bool = False  # an anchor with its public texts' router statistics


def _check_anchor(anchor: str, base: BaseSpec | None, *, peft: bool = False) -> None:
    """An anchored mixture's expert names the same anchor (its sha256) as the mixture."""
    if base is None or anchor == base.anchor:
        return
    if not base.anchor:
        raise ContractError(
            "wrong_anchor",
            f"the expert was trained on the base with the anchor {anchor[:16]}... merged, but "
            "this mixture has no anchor: train it on the plain base model",
        )
    said = (
        f"was trained on another anchor ({anchor[:16]}...)"
        if anchor
        else (
            f"its adapter_config.json has no {PEFT_ANCHOR_KEY}, so it was not trained by the "
            "mixture's recipe"
            if peft
            else "names none"
        )
    )
    raise ContractError(
        "wrong_anchor",
        f"this mixture's experts build on its anchor {base.anchor}, and the expert {said}: "
        "download the anchor from the mixture's page, merge it into the base and train "
        "again (python -m routing lm train --anchor ANCHOR.safetensors, or the PEFT recipe "
        f"on the mixture's page, which records {PEFT_ANCHOR_KEY} in adapter_config.json)",
    )


def check_token_modules(modules) -> None:
    """A per-token mixture's experts are LoRA on the MLP only: attention is shared by every
    expert, so an attention adapter has nowhere to run; the message says how to retrain."""
    outside = sorted({m.rsplit(".", 1)[-1] for m in modules} - set(MLP_PROJECTIONS))
    if outside:
        raise ContractError(
            "attention_modules_in_token_mixture",
            f"the expert adapts {', '.join(outside)}, outside the MLP; a per-token mixture "
            "routes each token among the experts' feed-forward layers and shares attention, "
            "so its experts are LoRA on gate_proj, up_proj and down_proj only: train it again "
            "with `python -m routing lm train --target-modules gate_proj,up_proj,down_proj` "
            "(the default) or PEFT's LoraConfig(target_modules=['gate_proj', 'up_proj', "
            "'down_proj'])",
        )


def _check_base(named: str, fingerprint: str, base: BaseSpec | None, how: str) -> None:
    if base is None:
        return
    if named and not same_base(named, base.name):
        raise ContractError(
            "wrong_base_model",
            f"the expert was trained on {named!r}, but this mixture's base model is "
            f"{base.name!r}: {how}",
        )
    if fingerprint and base.fingerprint and fingerprint != base.fingerprint:
        raise ContractError(
            "wrong_base_model",
            f"the expert was trained on weights with fingerprint {fingerprint[:16]}..., but "
            f"this mixture's base {base.name!r} loads {base.fingerprint[:16]}... (a "
            f"dequantised GGUF file is not the checkpoint it was made from): {how}",
        )


def check_lm_expert(
    path: str | os.PathLike,
    *,
    base: BaseSpec | None = None,
    adapter_config: dict | str | os.PathLike | None = None,
    look_beside: bool = True,
) -> LMExpertHeader:
    """Check a language-model expert's header against the contract and, when given, the
    mixture's base model; return what it declares."""
    header = read_header(path)
    metadata = header.metadata
    how = f"train it again on {base.name!r}" if base else ""
    if KEY_FORMAT in metadata:
        version = metadata[KEY_FORMAT]
        if version != LM_FORMAT_VERSION:
            raise ContractError(
                "bad_version",
                f"{KEY_FORMAT} is {version!r}: "
                + (
                    "that is a classification expert; a language-model mixture reads "
                    if version == "1"
                    else "this hub's language-model mixtures read "
                )
                + f"version {LM_FORMAT_VERSION}",
            )
        if metadata.get(KEY_TASK) != TASK:
            raise ContractError(
                "bad_kind", f"{KEY_TASK} is {metadata.get(KEY_TASK)!r}; expected {TASK!r}"
            )
        if require(metadata, KEY_KIND) != "lora":
            raise ContractError(
                "bad_kind", f"{KEY_KIND} is {metadata[KEY_KIND]!r}; expected 'lora'"
            )
        base_model = require(metadata, KEY_BASE)
        fingerprint = metadata.get(KEY_BASE_FINGERPRINT, "")
        _check_base(base_model, fingerprint, base, f"{how} (python -m routing lm train)")
        anchor, role = metadata.get(KEY_ANCHOR, ""), metadata.get(KEY_ROLE, "expert")
        if role not in ("expert", "anchor"):
            raise ContractError("bad_kind", f"{KEY_ROLE} is {role!r}; expected 'anchor' or none")
        if role == "expert":
            _check_anchor(anchor, base)
        lora, source, domain = lora_from_metadata(metadata), "moecollab", metadata.get(KEY_DOMAIN)
    else:
        adapter_config = adapter_config_for(
            path,
            adapter_config,
            look_beside=look_beside,
            train_command="python -m routing lm train",
            missing_key=KEY_FORMAT,
        )
        task = adapter_config.get("task_type")
        if task != "CAUSAL_LM":
            raise ContractError(
                "bad_task_type",
                f"adapter_config.json has task_type {task!r}; a language-model mixture runs "
                "CAUSAL_LM adapters (AutoModelForCausalLM on the base model)",
            )
        saved = modules_to_save(adapter_config)
        if saved:
            raise ContractError(
                "bad_lora",
                f"adapter_config.json lists {saved} in modules_to_save; a language-model "
                "expert holds only LoRA matrices",
            )
        lora = lora_from_peft_config(adapter_config, None)
        named = str(adapter_config.get("base_model_name_or_path") or "")
        _check_base(named, "", base, f"{how} (AutoModelForCausalLM on the mixture's base)")
        base_model, fingerprint, source, domain = (base.name if base else named), "", "peft", None
        # PEFT saves no metadata of ours: the recipe records the anchor's sha256 in
        # adapter_config.json (PEFT ignores the key when it loads the adapter).
        anchor, role = str(adapter_config.get(PEFT_ANCHOR_KEY) or ""), "expert"
        _check_anchor(anchor, base, peft=True)
    extra = (ROUTER_MEAN, ROUTER_MSQ) if role == "anchor" else ()
    check_lora_tensors(header, lora, base, extra)
    has_router = role == "anchor" and check_router_stats(header, base)
    return LMExpertHeader(
        base_model=base_model,
        base_fingerprint=fingerprint,
        domain=domain,
        source=source,
        num_parameters=sum(math.prod(t.shape) for t in header.tensors.values()),
        lora=lora,
        metadata=dict(metadata),
        anchor=anchor,
        role=role,
        router_stats=has_router,
    )
