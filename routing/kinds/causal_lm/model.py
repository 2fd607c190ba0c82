"""A composed language-model mixture: a frozen causal LM, LoRA experts, a router reading
each text's prefix, and the composition folder it is saved to.

Per sequence, the router weighs the experts from the prefix alone; then either
- `mix`: p(x_t) = sum over the selected experts k of g_k p_k(x_t | x_<t) at every
  position (one adapted pass per selected expert), or
- `merge`: one pass with the gate-weighted sum of the selected experts' LoRA deltas.
Top-1 is one adapted pass either way. Generation groups prompts by expert (top-1) or
mixes the experts' next-token distributions step by step, each with its KV cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ...config import GateConfig, LMRouting, from_dict, to_dict
from ...gate import Gate, top_k_weights
from ...peft_config import LoraSpec
from .base import CausalBase, prefix_log_likelihood
from .contract import LMExpertHeader
from .experts import LMExpert, lm_expert_from_tensors
from .generation import generate_grouped, generate_mixed
from .layout import LORA_KEY
from .scoring import mixture_log_probs

LM_COMPOSITION_FORMAT = "moecollab-lm-composition"
LM_COMPOSITION_VERSION = 1
CENTROID_TEMPERATURE = 0.05  # cosine similarities to domain centroids, sharpened


@dataclass
class Generation:
    prompt: str
    text: str  # the continuation
    experts: list[tuple[str, float]] = field(default_factory=list)  # routed: (name, weight)
    tokens: list[str] = field(default_factory=list)  # per token: its top expert (per-token)
    pieces: list[str] = field(default_factory=list)  # per token: its text ("".join: `text`)


class MoECausalLM:
    granularity = "sequence"

    def __init__(
        self,
        base: CausalBase,
        experts: list[LMExpert],
        expert_domains: list[str],
        *,
        routing: LMRouting,
        gate: Gate | None = None,
        centroids: torch.Tensor | None = None,
        top_k: int = 1,
        info: dict | None = None,
    ):
        if len(experts) != len(expert_domains):
            raise ValueError("one domain per expert is needed")
        if routing.router == "learned" and (gate is None or gate.n_experts != len(experts)):
            raise ValueError("a learned router needs a gate with one output per expert")
        self.base, self.experts, self.expert_domains = base, experts, expert_domains
        self.domains = list(dict.fromkeys(expert_domains))
        self.routing, self.top_k, self.info = routing, top_k, info or {}
        self.gate = gate.to(base.device).eval() if gate is not None else None
        self.centroids = centroids
        self.names = [e.attach(base) for e in experts]

    @classmethod
    def of_one(cls, base, expert: LMExpert, routing: LMRouting | None = None, domain=None):
        """A composition of a single expert: every text goes to it."""
        routing = dataclasses.replace(routing or LMRouting(), router="learned")
        gate = Gate(base.hidden_size, 1, GateConfig(top_k=1))
        name = domain or expert.header.domain or expert.name
        return cls(base, [expert], [name], routing=routing, gate=gate, top_k=1)

    def gate_digest(self) -> str:
        h = hashlib.sha256(json.dumps(to_dict(self.gate.config), sort_keys=True).encode())
        for name, value in sorted(self.gate.state_dict().items()):
            h.update(name.encode())
            h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    # --- routing ------------------------------------------------------------------

    def weights_from(self, features=None, prefix_ll=None, top_k: int | None = None):
        """Routing weights (n, N) from the router's input: prefix features (learned and
        centroid routers) or each expert's prefix log-likelihood (prefix-likelihood)."""
        k = self.top_k if top_k is None else top_k
        router = self.routing.router
        if router == "learned":
            with torch.inference_mode():
                return self.gate(features.to(self.base.device), top_k=k).weights.float().cpu()
        if router == "centroid":
            f = torch.nn.functional.normalize(features.float(), dim=-1)  # (n, D)
            c = torch.nn.functional.normalize(self.centroids.float(), dim=-1)  # (N, D)
            return top_k_weights(torch.softmax(f @ c.T / CENTROID_TEMPERATURE, -1), k)
        if router == "prefix-likelihood":
            return top_k_weights(torch.softmax(prefix_ll.float(), -1), k)
        raise ValueError(f"unknown router {router!r}")

    def cached_weights(self, split, top_k: int | None = None) -> torch.Tensor:
        return self.weights_from(split.features, split.prefix_ll, top_k)

    def route(self, texts: list[str], top_k: int | None = None) -> torch.Tensor:
        """Routing weights (n, N) of new texts, reading only their first prefix tokens."""
        p = self.routing.prefix_tokens
        if self.routing.router == "prefix-likelihood":
            ll = [prefix_log_likelihood(self.base, texts, prefix_tokens=p, expert=n)
                  for n in self.names]  # fmt: skip
            return self.weights_from(prefix_ll=torch.stack(ll, 1), top_k=top_k)
        features = self.base.prefix_features(texts, prefix_tokens=p, layer=self.routing.layer)
        return self.weights_from(features, top_k=top_k)

    # --- running it ---------------------------------------------------------------

    @torch.inference_mode()
    def token_log_probs(self, texts: list[str], *, top_k: int | None = None, weights=None):
        """(n, T) log p of each text's scored tokens under the composition, run as it runs:
        only the experts the router selected for a text run on it."""
        weights = self.route(texts, top_k) if weights is None else weights
        p = self.routing.prefix_tokens
        if self.routing.mixing == "merge" or int((weights > 0).sum(-1).max()) == 1:
            # one pass: each text with its expert (top-1) or its experts' merged deltas
            return self.base.token_log_probs(texts, prefix_tokens=p, merged=(self.names, weights))
        width = self.base.max_tokens - p
        per_expert = torch.full((len(texts), len(self.names), width), float("nan"))
        for k, name in enumerate(self.names):
            rows = weights[:, k].nonzero().squeeze(1).tolist()  # texts routed to expert k
            if rows:
                lp = self.base.token_log_probs(
                    [texts[i] for i in rows], prefix_tokens=p, expert=name
                )
                per_expert[rows, k] = lp
        return mixture_log_probs(weights, per_expert)  # experts that did not run weigh 0

    @torch.inference_mode()
    def generate(
        self, prompts: list[str], *, max_new_tokens: int = 32, do_sample: bool = False,
        temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, top_k: int | None = None,
        min_new_tokens: int = 0,
    ) -> list[Generation]:  # fmt: skip
        """Route each prompt on its prefix, then generate with only the selected experts."""
        weights = self.route(prompts, top_k)  # (B, N)
        options = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                   "temperature": temperature, "top_p": top_p, "seed": seed,
                   "min_new_tokens": min_new_tokens}  # fmt: skip
        if int((weights > 0).sum(-1).max()) == 1 or self.routing.mixing == "merge":
            texts = generate_grouped(self.base, prompts, self.names, weights, **options)
        else:
            texts = generate_mixed(self.base, prompts, self.names, weights, **options)
        out = []
        for prompt, text, row in zip(prompts, texts, weights, strict=True):
            chosen = [(self.experts[k].name, round(float(row[k]), 4))
                      for k in row.argsort(descending=True).tolist() if row[k] > 0]  # fmt: skip
            out.append(Generation(prompt, text, chosen))
        return out

    # --- files ----------------------------------------------------------------------

    def config(self) -> dict:
        pairs = zip(self.experts, self.expert_domains, strict=True)
        return {
            "format": LM_COMPOSITION_FORMAT,
            "format_version": LM_COMPOSITION_VERSION,
            "base_model": self.base.name,
            "base_revision": self.base.revision,
            "base_fingerprint": self.base.weights_fingerprint,
            "max_tokens": self.base.max_tokens,
            "hidden_size": self.base.hidden_size,
            "routing": to_dict(self.routing),
            "top_k": self.top_k,
            "gate": to_dict(self.gate.config) if self.gate is not None else None,
            "experts": [e.entry(d) for e, d in pairs],
            "info": self.info,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        if self.gate is not None:
            tensors.update({f"gate.{k}": v for k, v in self.gate.state_dict().items()})
        if self.centroids is not None:
            tensors["centroids"] = self.centroids
        for i, expert in enumerate(self.experts):
            tensors.update({f"experts.{i}.{k}": v for k, v in expert.lora_tensors.items()})
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
        save_file(tensors, folder / "model.safetensors.tmp", {"format": "pt"})
        os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder, *, base: CausalBase | None = None, device=None) -> MoECausalLM:
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.get("format") != LM_COMPOSITION_FORMAT:
            raise ValueError(f"{folder} is not a {LM_COMPOSITION_FORMAT} folder")
        if base is None:
            base = CausalBase(
                config["base_model"], revision=config.get("base_revision"),
                max_tokens=config["max_tokens"], device=device,
            )  # fmt: skip
        elif base.weights_fingerprint != config["base_fingerprint"]:
            raise ValueError(f"this composition needs the base model {config['base_model']!r}")
        tensors = load_file(folder / "model.safetensors")
        experts = [_expert(i, entry, config, tensors) for i, entry in enumerate(config["experts"])]
        gate = None
        if config["gate"] is not None:
            gate = Gate(config["hidden_size"], len(experts), from_dict(GateConfig, config["gate"]))
            gate.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("gate.")})
        return cls(
            base,
            experts,
            [e["domain"] for e in config["experts"]],
            routing=from_dict(LMRouting, config["routing"]),
            gate=gate,
            centroids=tensors.get("centroids"),
            top_k=config["top_k"],
            info=config.get("info"),
        )


def _expert(i: int, entry: dict, config: dict, tensors: dict) -> LMExpert:
    prefix = f"experts.{i}."
    own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    modules: dict[str, dict[str, str]] = {}
    for key in own:
        m = LORA_KEY.match(key)
        modules.setdefault(f"model.layers.{int(m.group(1))}.{m.group(2)}", {})[m.group(3)] = key
    spec = entry["lora"]
    lora = LoraSpec(spec["r"], spec["alpha"], spec["target_modules"], modules)
    header = LMExpertHeader(
        base_model=config["base_model"],
        base_fingerprint=config["base_fingerprint"],
        domain=entry["domain"],
        source="moecollab",
        num_parameters=sum(v.numel() for v in own.values()),
        lora=lora,
    )
    return lm_expert_from_tensors(entry["name"], header, entry["sha256"], own)
