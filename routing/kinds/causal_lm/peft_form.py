"""A language-model adapter file (an expert or an anchor) in PEFT's folder form: what
`PeftModel.from_pretrained` reads. Torch-free, so the hub's web process serves a
mixture's anchor this way for the plain-PEFT recipe."""

from __future__ import annotations

import io
import json
import os
import zipfile

from ...peft_config import LoraSpec
from ...safetensors_header import rewrite
from .contract import check_lm_expert
from .layout import ROUTER_MEAN, ROUTER_MSQ


def peft_adapter_config(lora: LoraSpec, base_model: str) -> dict:
    """The adapter_config.json PEFT reads for a LoRA of this rank, alpha and targets."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "target_modules": sorted(lora.target_modules),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "base_model_name_or_path": base_model,
    }


def peft_zip(path: str | os.PathLike, *, base_model: str, adapter_config: dict | None = None,
             base=None) -> bytes:  # fmt: skip
    """A zip of `adapter_model.safetensors` and `adapter_config.json` for the adapter file
    at `path` (the project's file, or a PEFT adapter with its `adapter_config`); an
    anchor's router statistics stay out (PEFT has no place for them)."""
    header = check_lm_expert(path, base=base, adapter_config=adapter_config, look_beside=False)
    if header.source == "peft" and adapter_config is not None:
        config = dict(adapter_config)
    else:
        config = peft_adapter_config(header.lora, base_model)
    weights = io.BytesIO()
    rewrite(path, weights, lambda k: None if k in (ROUTER_MEAN, ROUTER_MSQ) else k,
            {"format": "pt"})  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("adapter_model.safetensors", weights.getvalue())
        z.writestr("adapter_config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out.getvalue()
