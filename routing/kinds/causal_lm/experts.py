"""Language-model experts: a LoRA adapter of the base causal LM, in the project's single
file (format 2) or as a plain PEFT adapter folder; loading either, writing either."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ...expert_metadata import (
    KEY_ANCHOR,
    KEY_BASE,
    KEY_BASE_FINGERPRINT,
    KEY_DOMAIN,
    KEY_FORMAT,
    KEY_KIND,
    KEY_ROLE,
    KEY_TASK,
    lora_metadata,
)
from ...files import check_finite, file_sha256, save_safetensors
from .contract import LM_FORMAT_VERSION, TASK, LMExpertHeader, check_lm_expert
from .layout import ROUTER_MEAN, ROUTER_MSQ
from .peft_form import peft_adapter_config


def expert_folder(k: int, name: str) -> str:
    """An expert's folder in an export (`experts/<it>`): gate index and name, path-safe."""
    return f"{k:02d}-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "expert")


@dataclass
class LMExpert:
    """A loaded language-model expert: canonical LoRA tensors, e.g.
    `model.layers.0.self_attn.q_proj.lora_A.weight`, named as the base model's modules."""

    name: str
    header: LMExpertHeader
    sha256: str
    lora_tensors: dict[str, torch.Tensor]
    # an anchor's router statistics (2, L, D) as `token_routing.mlp_input_stats` gives them
    router_stats: torch.Tensor | None = None

    architecture = "lora"

    @property
    def scale(self) -> float:
        return self.header.lora.scaling

    @property
    def output_key(self) -> str:
        """What the expert's outputs depend on besides the base model and the texts."""
        lora = self.header.lora
        return f"lm:{self.sha256}:r{lora.r}:alpha{lora.alpha:g}"

    @property
    def adapter_name(self) -> str:
        """The expert's name in a base model's LoRA bank (one per file and settings)."""
        import hashlib

        return "x" + hashlib.sha256(self.output_key.encode()).hexdigest()[:16]

    def attach(self, base) -> str:
        """Load the expert's pairs into the base model's bank (once); its bank name."""
        base.bank.add(self.adapter_name, self.lora_tensors, self.scale)
        return self.adapter_name

    def modules(self) -> list[str]:
        return sorted({k.rsplit(".lora_", 1)[0] for k in self.lora_tensors})

    def entry(self, domain: str) -> dict:
        """The expert as a composition's and an export's config.json describe it."""
        lora = self.header.lora
        return {
            "name": self.name,
            "kind": "lora",
            "domain": domain,
            "sha256": self.sha256,
            "lora": {
                "r": lora.r,
                "alpha": lora.alpha,
                "target_modules": list(lora.target_modules),
                "modules": self.modules(),
            },
        }

    def peft_config(self, base_model: str) -> dict:
        """The adapter_config.json PEFT reads for this expert."""
        return peft_adapter_config(self.header.lora, base_model)

    def save_peft(self, folder: str | os.PathLike, base_model: str) -> Path:
        """Write the expert as a plain PEFT adapter folder (PeftModel.from_pretrained)."""
        folder = Path(folder)
        tensors = {f"base_model.model.{k}": v for k, v in self.lora_tensors.items()}
        save_safetensors(tensors, folder / "adapter_model.safetensors", {"format": "pt"})
        (folder / "adapter_config.json").write_text(
            json.dumps(self.peft_config(base_model), indent=2, sort_keys=True) + "\n"
        )
        return folder


def save_lm_expert(
    path,
    *,
    lora_tensors: dict[str, torch.Tensor],
    r: int,
    alpha: float,
    target_modules: list[str],
    base_model: str,
    base_fingerprint: str = "",
    domain: str | None = None,
    anchor: str = "",
    role: str = "expert",
    router_stats: torch.Tensor | None = None,
) -> None:
    """Write a language-model expert in the project's single file (format 2); tensor names
    are PEFT's, so PEFT tools read them too."""
    meta = {
        "format": "pt",
        KEY_FORMAT: LM_FORMAT_VERSION,
        KEY_TASK: TASK,
        KEY_KIND: "lora",
        KEY_BASE: base_model,
        **lora_metadata(r, alpha, target_modules),
    }
    if base_fingerprint:
        meta[KEY_BASE_FINGERPRINT] = base_fingerprint
    if domain:
        meta[KEY_DOMAIN] = domain
    if anchor:  # the sha256 of the anchor merged into the base it was trained on
        meta[KEY_ANCHOR] = anchor
    if role != "expert":
        meta[KEY_ROLE] = role
    tensors = {f"base_model.model.{k}": v for k, v in lora_tensors.items()}
    if router_stats is not None:  # an anchor's: its public texts' router statistics
        tensors[ROUTER_MEAN] = router_stats[0]
        tensors[ROUTER_MSQ] = router_stats[1, :, 0]
    save_safetensors(tensors, path, meta)


def lm_expert_from_tensors(
    name: str, header: LMExpertHeader, sha256: str, tensors: dict[str, torch.Tensor]
) -> LMExpert:
    canonical = {}
    for module, slot in header.lora.modules.items():
        for ab, key in slot.items():
            tensor = tensors[key] if key in tensors else tensors[f"{module}.lora_{ab}.weight"]
            canonical[f"{module}.lora_{ab}.weight"] = tensor.float()
    return LMExpert(name=name, header=header, sha256=sha256, lora_tensors=canonical)


def load_lm_expert(
    path: str | os.PathLike, *, base=None, adapter_config=None, name: str | None = None
) -> LMExpert:
    """Check, then load a language-model expert file (native or PEFT); rejects NaN/Inf."""
    header = check_lm_expert(path, base=base, adapter_config=adapter_config)
    check_finite(path)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    stem = Path(path).parent.name if Path(path).stem == "adapter_model" else Path(path).stem
    router = None
    if header.router_stats:
        mean = tensors.pop(ROUTER_MEAN).float()  # (L, D)
        router = torch.zeros(2, *mean.shape)
        router[0], router[1, :, 0] = mean, tensors.pop(ROUTER_MSQ).float()
    expert = lm_expert_from_tensors(name or stem, header, file_sha256(path), tensors)
    expert.router_stats = router
    return expert
