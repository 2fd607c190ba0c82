"""The `moecollab.*` keys of an expert file's safetensors metadata, shared by every kind's
contract, and reading the LoRA settings from them."""

from __future__ import annotations

from .peft_config import LoraSpec
from .safetensors_header import ContractError, parse_json

PREFIX = "moecollab."
KEY_FORMAT = PREFIX + "format_version"
KEY_TASK = PREFIX + "task"  # the kind of mixture (format 2 on): "causal-lm"
KEY_KIND = PREFIX + "kind"
KEY_BASE = PREFIX + "base_model"
KEY_BASE_FINGERPRINT = PREFIX + "base_fingerprint"
KEY_LABELS = PREFIX + "labels"
KEY_DOMAIN = PREFIX + "domain"
KEY_LORA_R = PREFIX + "lora_r"
KEY_LORA_ALPHA = PREFIX + "lora_alpha"
KEY_LORA_TARGETS = PREFIX + "lora_target_modules"
KEY_ANCHOR = PREFIX + "anchor_sha256"  # the anchor merged into the base it was trained on
KEY_ROLE = PREFIX + "role"  # "anchor" for a mixture's anchor; absent for an expert


def require(metadata: dict[str, str], key: str) -> str:
    if key not in metadata:
        raise ContractError("missing_metadata", f"__metadata__ lacks the key {key!r}")
    return metadata[key]


def lora_from_metadata(metadata: dict[str, str]) -> LoraSpec:
    try:
        r = int(require(metadata, KEY_LORA_R))
        alpha = float(require(metadata, KEY_LORA_ALPHA))
        targets = parse_json(
            require(metadata, KEY_LORA_TARGETS), "bad_lora", f"{KEY_LORA_TARGETS} is not JSON"
        )
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ContractError):
            raise
        raise ContractError("bad_lora", f"invalid LoRA settings in __metadata__: {exc}") from None
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ContractError("bad_lora", f"{KEY_LORA_TARGETS} must be a JSON array of module names")
    return LoraSpec(r=r, alpha=alpha, target_modules=targets)


def lora_metadata(r: int, alpha: float, target_modules: list[str]) -> dict[str, str]:
    import json

    return {
        KEY_LORA_R: str(r),
        KEY_LORA_ALPHA: str(alpha),
        KEY_LORA_TARGETS: json.dumps(list(target_modules)),
    }
