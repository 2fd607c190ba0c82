"""Expert kinds, their files, and loading them for prediction.

- `head`: an MLP over the frozen base model's pooled embedding.
- `lora`: a PEFT LoRA adapter on the base encoder plus a classification layer
  over the adapted encoder's pooled output: mean-pooled (the project's own
  experts), or BERT's pooler over [CLS] for a plain PEFT `SEQ_CLS` adapter, as
  `BertForSequenceClassification` computes it.

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
from torch import nn

from ...expert_metadata import KEY_BASE, KEY_DOMAIN, KEY_FORMAT, KEY_KIND, KEY_LABELS, lora_metadata
from ...files import check_finite, file_sha256, save_safetensors
from ...safetensors_header import ContractError
from ...tensors import mean_pool
from .contract import EXPERT_FORMAT_VERSION, ExpertHeader, check_expert_file
from .layout import CLS_POOLER


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
class ClassifierExpert:
    """A loaded classification expert, ready to predict on base features or adapted passes."""

    name: str
    header: ExpertHeader
    sha256: str
    head: HeadExpert | None = None
    classifier: nn.Linear | None = None
    lora_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # canonical key -> tensor
    # cls_pooler: the file's own pooler ("weight"/"bias", or LoRA "A"/"B") until `bind`
    # resolves it against the base model into `pooler`
    pooler_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    pooler: nn.Linear | None = None

    @property
    def architecture(self) -> str:
        return self.header.architecture

    @property
    def labels(self) -> list[str]:
        return self.header.labels

    @property
    def pooling(self) -> str:
        return self.header.pooling

    @property
    def output_key(self) -> str:
        """What the expert's outputs depend on besides the base model and the texts: its
        file, and for a lora expert how it is run (a PEFT adapter's config says that)."""
        if self.architecture == "head":
            return self.sha256
        lora = self.header.lora
        return f"{self.sha256}:{self.pooling}:r{lora.r}:alpha{lora.alpha:g}"

    @property
    def adapter_name(self) -> str:
        """The PEFT adapter name of a lora expert in a shared encoder: one per file and way
        of running it (one file uploaded with two adapter configs is two adapters)."""
        return "x" + hashlib.sha256(self.output_key.encode()).hexdigest()[:16]

    def bind(self, encoder) -> None:
        """Resolve what the expert takes from the base model: a SEQ_CLS adapter's pooler
        is the base's own (`pooler.dense`), or the file's, plus the file's LoRA pair."""
        if self.pooling != CLS_POOLER:
            return
        if self.pooler is None:
            self.pooler = self._resolve_pooler(encoder)
        self.pooler.to(encoder.device)

    def _resolve_pooler(self, encoder) -> nn.Linear:
        own = self.pooler_tensors
        if "weight" in own:
            weight, bias = own["weight"], own["bias"]
        else:
            base = encoder.pooler_state
            if base is None:
                raise ContractError(
                    "wrong_base_model",
                    f"a SEQ_CLS adapter's classifier reads BERT's pooler, but the base model "
                    f"{encoder.name} has no trained pooler weights: save the pooler with the "
                    "adapter (LoraConfig(modules_to_save=['classifier', 'pooler']))",
                )
            weight, bias = base["weight"].float().cpu(), base["bias"].float().cpu()
            if "A" in own:  # W + (alpha / r) B A, as PEFT's LoRA layer computes it
                lora = self.header.lora
                weight = weight + (lora.alpha / lora.r) * (own["B"] @ own["A"])  # (D, D)
        pooler = nn.Linear(weight.shape[1], weight.shape[0])
        pooler.load_state_dict({"weight": weight, "bias": bias})
        return pooler.eval().requires_grad_(False)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The adapted encoder's last hidden state (B, T, D) -> what the classifier reads."""
        if self.pooling == CLS_POOLER:
            return torch.tanh(self.pooler(hidden[:, 0].float()))  # (B, D)
        return mean_pool(hidden, mask)  # (B, D)

    def entry(self, domain: str) -> dict:
        """The expert as a composition's and an export's config.json describe it."""
        entry = {
            "name": self.name,
            "kind": self.architecture,  # the key of the file format
            "domain": domain,
            "labels": list(self.labels),
            "sha256": self.sha256,
        }
        if self.architecture == "head":
            entry["head_hidden"] = self.head.hidden.out_features
            return entry
        lora = self.header.lora
        entry["lora"] = {
            "r": lora.r,
            "alpha": lora.alpha,
            "target_modules": list(lora.target_modules),
            "modules": sorted({k.rsplit(".lora_", 1)[0] for k in self.lora_tensors}),
        }
        entry["pooling"] = self.pooling
        return entry

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors under canonical names (how compositions store them)."""
        if self.head is not None:
            return {f"head.{k}": v for k, v in self.head.state_dict().items()}
        out = {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}
        out.update(self.lora_tensors)
        if self.pooling == CLS_POOLER:
            if self.pooler is None:
                raise ValueError(f"expert {self.name}: bind it to its base model first")
            out.update({f"pooler.{k}": v for k, v in self.pooler.state_dict().items()})
        return out


def _metadata(
    architecture: str, base_model: str, labels: list[str], domain: str | None
) -> dict[str, str]:
    meta = {
        "format": "pt",
        KEY_FORMAT: EXPERT_FORMAT_VERSION,
        KEY_KIND: architecture,
        KEY_BASE: base_model,
        KEY_LABELS: json.dumps(list(labels)),
    }
    if domain:
        meta[KEY_DOMAIN] = domain
    return meta


def save_head_expert(path, head: HeadExpert, *, labels, base_model: str, domain=None) -> None:
    tensors = {f"head.{k}": v for k, v in head.state_dict().items()}
    save_safetensors(tensors, path, _metadata("head", base_model, labels, domain))


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
    meta.update(lora_metadata(r, alpha, target_modules))
    save_safetensors(tensors, path, meta)


def expert_from_tensors(
    name: str, header: ExpertHeader, sha256: str, tensors: dict[str, torch.Tensor]
) -> ClassifierExpert:
    """Build an Expert from a checked header and its tensors (file or canonical names)."""
    expert = ClassifierExpert(name=name, header=header, sha256=sha256)
    n_labels = len(header.labels)
    if header.architecture == "head":
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
    if "pooler.weight" in tensors:  # a composition's copy, already resolved
        expert.pooler_tensors = {"weight": tensors["pooler.weight"], "bias": tensors["pooler.bias"]}
    else:
        expert.pooler_tensors = {part: tensors[key] for part, key in header.pooler_keys.items()}
    return expert


def load_expert(
    path: str | os.PathLike,
    *,
    base=None,
    labels: list[str] | None = None,
    adapter_config=None,
    name: str | None = None,
) -> ClassifierExpert:
    """Check, then load an expert file (native or PEFT); rejects NaN/Inf."""
    header = check_expert_file(path, base=base, labels=labels, adapter_config=adapter_config)
    check_finite(path)
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    return expert_from_tensors(name or Path(path).stem, header, file_sha256(path), tensors)
