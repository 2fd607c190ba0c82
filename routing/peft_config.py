"""A plain PEFT LoRA adapter's `adapter_config.json`: what every kind of mixture reads
from it, and the options no mixture runs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .basemodels import BaseSpec, same_base
from .safetensors_header import ContractError, parse_json

# Options that change what the LoRA matrices mean; only their defaults are run.
UNSUPPORTED = (
    ("use_dora", False),
    ("use_rslora", False),
    ("lora_bias", False),
    ("fan_in_fan_out", False),
    ("bias", "none"),
    ("rank_pattern", {}),
    ("alpha_pattern", {}),
)


@dataclass
class LoraSpec:
    r: int
    alpha: float
    target_modules: list[str]
    # canonical module name -> {"A": file key, "B": file key}
    modules: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


def lora_from_peft_config(config: dict, base: BaseSpec | None) -> LoraSpec:
    """Rank, alpha and target modules of an adapter config; refuses what is not plain LoRA
    and an adapter trained on another base model, saying how to fix it."""
    if config.get("peft_type") != "LORA":
        raise ContractError(
            "bad_lora", f"adapter_config.json has peft_type {config.get('peft_type')!r}, not 'LORA'"
        )
    for key, ok in UNSUPPORTED:
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


def modules_to_save(config: dict) -> list[str]:
    """The whole modules an adapter saves beside its LoRA matrices."""
    saved = config.get("modules_to_save") or []
    if isinstance(saved, str):
        saved = [saved]
    if not isinstance(saved, list):
        raise ContractError("bad_lora", "modules_to_save in adapter_config.json must be a list")
    return [str(m) for m in saved]


def load_adapter_config(path: str | os.PathLike) -> dict:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError("bad_lora", f"adapter_config.json cannot be read: {exc}") from None
    config = parse_json(text, "bad_lora", "adapter_config.json is not valid JSON")
    if not isinstance(config, dict):
        raise ContractError("bad_lora", "adapter_config.json is not a JSON object")
    return config


def adapter_config_for(
    path: str | os.PathLike,
    adapter_config: dict | str | os.PathLike | None,
    *,
    look_beside: bool,
    train_command: str,
    missing_key: str,
) -> dict:
    """The adapter_config of a file without the project's metadata (a plain PEFT adapter):
    the one given (a dict or a path), else the `adapter_config.json` beside the file when
    `look_beside`; a ContractError says how to make an expert the hub reads."""
    if adapter_config is None:
        beside = Path(path).with_name("adapter_config.json")
        if not look_beside or not beside.exists():
            raise ContractError(
                "missing_metadata",
                f"__metadata__ lacks {missing_key!r}: write experts with "
                f"`{train_command}`, or upload a PEFT adapter with its adapter_config.json",
            )
        adapter_config = beside
    if not isinstance(adapter_config, dict):
        adapter_config = load_adapter_config(adapter_config)
    return adapter_config
