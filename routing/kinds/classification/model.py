"""A composed Mixture-of-Experts classifier: base encoder, gate, experts, union label space,
and the composition folder it is saved to."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ...config import GateConfig, from_dict, to_dict
from ...gate import Gate
from ...losses import mixture_probs
from ...peft_config import LoraSpec
from .calibration import SIGNALS_PER_EXPERT, calibrated, gate_inputs, label_masks
from .contract import ExpertHeader
from .encoder import GATE_MEAN, BaseEncoder
from .experts import ClassifierExpert, expert_from_tensors
from .layout import LORA_KEY, MEAN

COMPOSITION_FORMAT = "moecollab-composition"
COMPOSITION_FORMAT_VERSION = 1


def union_labels(label_sets: list[list[str]]) -> list[str]:
    """Labels in order of first appearance; equal names are the same output."""
    out: list[str] = []
    for labels in label_sets:
        out.extend(label for label in labels if label not in out)
    return out


class MoEClassifier:
    """Experts (frozen) + a gate over the base model's pooled features.

    p(y|x) = sum over the top-k experts of g_k(x) * p_k(y|x), with each p_k
    placed into the union label space and, when calibrated, sharpened or
    flattened by the expert's temperature. Prediction runs sparse: an expert
    runs only on the examples routed to it, except that a gate that reads its
    experts (`reads_experts`, `head` experts only, whose heads cost next to
    nothing on the shared features) needs every head's answer first.
    """

    def __init__(
        self,
        encoder: BaseEncoder,
        experts: list[ClassifierExpert],
        expert_domains: list[str],
        gate: Gate,
        *,
        domain_labels: dict[str, list[str]] | None = None,
        info: dict | None = None,
        temperatures: torch.Tensor | None = None,
        reads_experts: bool = False,
        gate_features: str = GATE_MEAN,
    ):
        if len(experts) != len(expert_domains) or len(experts) != gate.n_experts:
            raise ValueError("one domain per expert and one gate output per expert are needed")
        if reads_experts and any(e.architecture != "head" for e in experts):
            raise ValueError("a gate that reads its experts needs head experts only")
        if gate.side_dim != (SIGNALS_PER_EXPERT * len(experts) if reads_experts else 0):
            raise ValueError(f"the gate reads {gate.side_dim} expert signals, which does not fit")
        if gate.in_dim != encoder.gate_width(gate_features):
            raise ValueError(f"the gate reads {gate.in_dim} features, not {gate_features!r} ones")
        self.encoder = encoder
        self.experts = experts
        self.expert_domains = expert_domains
        self.gate = gate.to(encoder.device).eval()
        self.domains = list(dict.fromkeys(expert_domains))
        self.domain_labels = domain_labels or {}
        for expert, domain in zip(experts, expert_domains, strict=True):
            self.domain_labels.setdefault(domain, list(expert.labels))
        self.labels = union_labels([e.labels for e in experts])
        index = {label: i for i, label in enumerate(self.labels)}
        self.label_index = [torch.tensor([index[x] for x in e.labels]) for e in experts]
        self.masks = label_masks(self.label_index, len(self.labels))  # (N, U)
        self.temperatures = (
            torch.ones(len(experts)) if temperatures is None else temperatures.float().cpu()
        )
        self.reads_experts = reads_experts
        self.gate_features = gate_features
        self.info = info or {}
        self.adapter_names: list[str | None] = []
        for expert in experts:
            if expert.architecture == "lora":
                name = expert.adapter_name
                if name not in encoder.adapters:
                    encoder.add_lora(name, expert.header.lora, expert.lora_tensors)
                expert.bind(encoder)
                expert.classifier.to(encoder.device)
                self.adapter_names.append(name)
            else:
                expert.head.to(encoder.device)
                self.adapter_names.append(None)

    @classmethod
    def of_one(cls, encoder: BaseEncoder, expert: ClassifierExpert, domain: str | None = None):
        """A composition of a single expert: its gate always gives it weight 1."""
        gate = Gate(encoder.hidden_size, 1, GateConfig(top_k=1))
        return cls(encoder, [expert], [domain or expert.header.domain or expert.name], gate)

    @property
    def top_k(self) -> int:
        return self.gate.config.top_k

    def to_union(self, expert_probs: list[torch.Tensor]) -> torch.Tensor:
        """Per-expert distributions [(n, L_k)] -> (n, N, U), zero outside each label set."""
        n = expert_probs[0].shape[0]
        out = torch.zeros(n, len(self.experts), len(self.labels))
        for k, probs in enumerate(expert_probs):
            out[:, k, self.label_index[k]] = probs.float().cpu()
        return out

    @torch.inference_mode()
    def forward_batch(self, texts: list[str], top_k: int | None = None):
        """Sparse execution on one batch -> (probs (B, U), weights (B, N))."""
        batch = self.encoder.tokenize(texts)
        # one frozen base pass: (B, D) mean-pooled for the heads, and what the gate reads
        features, gate_features = self.encoder.base_pass(batch, self.gate_features)
        top = top_k if top_k is not None else self.top_k
        if self.reads_experts:  # every head answers on the shared features
            heads = [expert.head(features).softmax(-1) for expert in self.experts]  # [(B, L_k)]
            return self.mix_cached(gate_features, self.to_union(heads), top)
        weights = self.gate(gate_features, top_k=top).weights
        probs = torch.zeros(len(texts), len(self.labels), device=features.device)  # (B, U)
        for k, expert in enumerate(self.experts):
            rows = weights[:, k].nonzero().squeeze(1)  # examples routed to expert k
            if rows.numel() == 0:
                continue
            if expert.architecture == "head":
                logits = expert.head(features[rows])  # (b, L_k)
            else:
                sub = {key: value[rows] for key, value in batch.items()}
                pooled = self.encoder.pooled(
                    sub, adapter=self.adapter_names[k], pool=expert.pool
                )  # (b, D)
                logits = expert.classifier(pooled)  # (b, L_k)
            expert_p = (logits / float(self.temperatures[k])).softmax(-1)  # (b, L_k)
            cols = self.label_index[k].to(features.device)
            probs[rows[:, None], cols[None, :]] += weights[rows, k, None] * expert_p
        return probs.cpu(), weights.cpu()

    def predict_proba(self, texts: list[str], *, top_k=None, batch_size=64, progress=False):
        """(probs (n, U), weights (n, N)) in input order.

        Texts are batched by length, as in `BaseEncoder.embed`, so that short
        texts are not padded to the longest one.
        """
        from tqdm.auto import tqdm

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs = torch.empty(len(texts), len(self.labels))
        weights = torch.empty(len(texts), len(self.experts))
        bar = tqdm(total=len(texts), desc="predicting", unit="text", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            probs[idx], weights[idx] = self.forward_batch([texts[i] for i in idx], top_k)
            bar.update(len(idx))
        bar.close()
        return probs, weights

    def predict(self, texts: list[str], *, top_k=None) -> list[dict]:
        probs, weights = self.predict_proba(texts, top_k=top_k)
        out = []
        for p, w in zip(probs, weights, strict=True):
            label = int(p.argmax())
            expert = int(w.argmax())
            out.append(
                {
                    "label": self.labels[label],
                    "score": float(p[label]),
                    "expert": self.experts[expert].name,
                    "domain": self.expert_domains[expert],
                }
            )
        return out

    def gate_inputs(self, features: torch.Tensor, expert_probs: torch.Tensor) -> torch.Tensor:
        """What the gate reads: its features of the base pass (n, D or 3D) and, if it reads
        its experts, their signals from the calibrated expert_probs (n, N, U)."""
        return gate_inputs(features, expert_probs, self.masks, self.reads_experts)

    def calibrated(self, expert_probs: torch.Tensor) -> torch.Tensor:
        """The experts' distributions (n, N, U) with their temperatures applied."""
        return calibrated(expert_probs.float().cpu(), self.temperatures, self.masks)

    @torch.inference_mode()
    def gate_probs(self, features: torch.Tensor, expert_probs: torch.Tensor) -> torch.Tensor:
        """The gate's full softmax (n, N) from cached tensors: the gate's features of the base
        pass (`CachedSplit.gate_features`) and the experts' uncalibrated expert_probs."""
        x = self.gate_inputs(features.to(self.encoder.device), self.calibrated(expert_probs))
        return self.gate(x, top_k=len(self.experts)).probs.cpu()

    def mix_cached(self, features: torch.Tensor, expert_probs: torch.Tensor, top_k=None):
        """The same mixture from cached tensors: the gate's features of the base pass (n, D or
        3D, `CachedSplit.gate_features`), expert_probs (n, N, U) as the experts give them
        (the temperatures are applied here)."""
        k = self.top_k if top_k is None else top_k
        probs = self.calibrated(expert_probs)
        with torch.inference_mode():
            x = self.gate_inputs(features.to(self.encoder.device), probs)
            weights = self.gate(x, top_k=k).weights.cpu()  # (n, N)
        return mixture_probs(weights, probs), weights

    # --- files ----------------------------------------------------------------

    def config(self) -> dict:
        pairs = zip(self.experts, self.expert_domains, strict=True)
        experts = [expert.entry(domain) for expert, domain in pairs]
        return {
            "format": COMPOSITION_FORMAT,
            "format_version": COMPOSITION_FORMAT_VERSION,
            "base_model": self.encoder.name,
            "base_revision": self.encoder.revision,
            "max_length": self.encoder.max_length,
            "hidden_size": self.encoder.hidden_size,
            "labels": self.labels,
            "domains": {d: self.domain_labels[d] for d in self.domains},
            "experts": experts,
            "gate": to_dict(self.gate.config),
            "gate_features": self.gate_features,
            "gate_reads_experts": self.reads_experts,
            "temperatures": [round(float(t), 6) for t in self.temperatures],
            "info": self.info,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"gate.{k}": v for k, v in self.gate.state_dict().items()}
        for i, expert in enumerate(self.experts):
            tensors.update({f"experts.{i}.{k}": v for k, v in expert.state_dict().items()})
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
        tmp = folder / "model.safetensors.tmp"
        save_file(tensors, tmp, {"format": "pt"})
        os.replace(tmp, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, *, encoder: BaseEncoder | None = None, device=None):
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if (
            config.get("format") != COMPOSITION_FORMAT
            or config.get("format_version") != COMPOSITION_FORMAT_VERSION
        ):
            raise ValueError(
                f"{folder} is not a {COMPOSITION_FORMAT} v{COMPOSITION_FORMAT_VERSION} folder"
            )
        tensors = load_file(folder / "model.safetensors")
        if encoder is None:
            encoder = BaseEncoder(
                config["base_model"],
                revision=config.get("base_revision"),
                max_length=config["max_length"],
                device=device,
            )
        elif encoder.name != config["base_model"]:
            raise ValueError(f"this composition needs base model {config['base_model']!r}")
        experts = []
        for i, entry in enumerate(config["experts"]):
            prefix = f"experts.{i}."
            own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            header = ExpertHeader(
                architecture=entry["kind"],
                base_model=config["base_model"],
                labels=entry["labels"],
                domain=entry["domain"],
                source="moecollab",
                num_parameters=sum(v.numel() for v in own.values()),
                pooling=entry.get("pooling", MEAN),
            )
            if entry["kind"] == "lora":
                modules: dict[str, dict[str, str]] = {}
                for key in own:
                    m = LORA_KEY.match(key)
                    if m:
                        canonical = f"encoder.layer.{int(m.group(1))}.{m.group(2)}"
                        modules.setdefault(canonical, {})[m.group(3)] = key
                spec = entry["lora"]
                header.lora = LoraSpec(
                    r=spec["r"],
                    alpha=spec["alpha"],
                    target_modules=spec["target_modules"],
                    modules=modules,
                )
            experts.append(expert_from_tensors(entry["name"], header, entry["sha256"], own))
        gate_state = {k[len("gate.") :]: v for k, v in tensors.items() if k.startswith("gate.")}
        reads = bool(config.get("gate_reads_experts", False))  # older compositions: no
        side = SIGNALS_PER_EXPERT * len(experts) if reads else 0
        gate_config = from_dict(GateConfig, config["gate"])
        how = config.get("gate_features", GATE_MEAN)
        gate = Gate(encoder.gate_width(how), len(experts), gate_config, side)
        gate.load_state_dict(gate_state)
        temps = config.get("temperatures")
        return cls(
            encoder,
            experts,
            [e["domain"] for e in config["experts"]],
            gate,
            domain_labels=config["domains"],
            info=config.get("info"),
            temperatures=torch.tensor(temps) if temps else None,
            reads_experts=reads,
            gate_features=how,
        )
