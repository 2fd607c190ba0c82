"""Expert kinds, their files, and loading them for prediction.

- `head`: an MLP over the frozen base model's pooled embedding.
- `lora`: a PEFT LoRA adapter on the base encoder plus a classification layer
  over the adapted, mean-pooled output.

Both save to one safetensors file with the `moecollab.*` metadata of
docs/expert-format.md; `load_expert` reads either, and plain PEFT adapters.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from . import contract as c
from .contract import ExpertHeader, check_expert_file, check_finite


class HeadExpert(nn.Module):
    """features (B, D) -> logits (B, L)."""

    def __init__(self, in_dim: int, hidden: int, n_labels: int, dropout: float = 0.1):
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        h = self.dropout(torch.nn.functional.gelu(self.hidden(features)))  # (B, H)
        return self.out(h)  # (B, L)


@dataclass
class Expert:
    """A loaded expert, ready to predict on base features or adapted passes."""

    name: str
    header: ExpertHeader
    sha256: str
    head: HeadExpert | None = None
    classifier: nn.Linear | None = None
    lora_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # canonical key -> tensor

    @property
    def kind(self) -> str:
        return self.header.kind

    @property
    def labels(self) -> list[str]:
        return self.header.labels

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors under canonical names (how compositions store them)."""
        if self.head is not None:
            return {f"head.{k}": v for k, v in self.head.state_dict().items()}
        out = {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}
        out.update(self.lora_tensors)
        return out


def _metadata(kind: str, base_model: str, labels: list[str], domain: str | None) -> dict[str, str]:
    meta = {
        "format": "pt",
        c.KEY_FORMAT: c.FORMAT_VERSION,
        c.KEY_KIND: kind,
        c.KEY_BASE: base_model,
        c.KEY_LABELS: json.dumps(list(labels)),
    }
    if domain:
        meta[c.KEY_DOMAIN] = domain
    return meta


def _save_atomic(tensors: dict[str, torch.Tensor], path: str | os.PathLike, meta: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, tmp, meta)
    os.replace(tmp, path)


def save_head_expert(path, head: HeadExpert, *, labels, base_model: str, domain=None) -> None:
    tensors = {f"head.{k}": v for k, v in head.state_dict().items()}
    _save_atomic(tensors, path, _metadata("head", base_model, labels, domain))


def save_lora_expert(
    path,
    *,
    lora_tensors: dict[str, torch.Tensor],
    classifier: nn.Linear,
    r: int,
    alpha: float,
    target_modules: list[str],
    labels,
    base_model: str,
    domain=None,
) -> None:
    """Write a LoRA expert; tensor names are PEFT's, so PEFT tools can read them too."""
    tensors = {
        f"base_model.model.{k}": v for k, v in lora_tensors.items()
    }  # canonical "encoder.layer.0...lora_A.weight" -> PEFT's name
    tensors["classifier.weight"] = classifier.weight
    tensors["classifier.bias"] = classifier.bias
    meta = _metadata("lora", base_model, labels, domain)
    meta[c.KEY_LORA_R] = str(r)
    meta[c.KEY_LORA_ALPHA] = str(alpha)
    meta[c.KEY_LORA_TARGETS] = json.dumps(list(target_modules))
    _save_atomic(tensors, path, meta)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def expert_from_tensors(
    name: str, header: ExpertHeader, sha256: str, tensors: dict[str, torch.Tensor]
) -> Expert:
    """Build an Expert from a checked header and its tensors (file or canonical names)."""
    expert = Expert(name=name, header=header, sha256=sha256)
    n_labels = len(header.labels)
    if header.kind == "head":
        weight = tensors["head.hidden.weight"]
        expert.head = HeadExpert(weight.shape[1], weight.shape[0], n_labels)
        expert.head.load_state_dict({k[len("head.") :]: v for k, v in tensors.items()})
        expert.head.eval().requires_grad_(False)
        return expert
    cls_w = tensors.get(header.classifier_keys.get("weight", ""), tensors.get("classifier.weight"))
    cls_b = tensors.get(header.classifier_keys.get("bias", ""), tensors.get("classifier.bias"))
    expert.classifier = nn.Linear(cls_w.shape[1], n_labels)
    expert.classifier.load_state_dict({"weight": cls_w, "bias": cls_b})
    expert.classifier.eval().requires_grad_(False)
    for canonical, slot in header.lora.modules.items():
        for ab, key in slot.items():
            tensor = tensors[key] if key in tensors else tensors[f"{canonical}.lora_{ab}.weight"]
            expert.lora_tensors[f"{canonical}.lora_{ab}.weight"] = tensor
    return expert


def load_expert(
    path: str | os.PathLike,
    *,
    base=None,
    labels: list[str] | None = None,
    adapter_config=None,
    name: str | None = None,
) -> Expert:
    """Check, then load an expert file (native or PEFT); rejects NaN/Inf."""
    header = check_expert_file(path, base=base, labels=labels, adapter_config=adapter_config)
    check_finite(path)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    return expert_from_tensors(name or Path(path).stem, header, file_sha256(path), tensors)
