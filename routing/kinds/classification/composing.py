"""From experts and domain data to a trained, evaluated classifier composition.

Everything expensive (base features, expert outputs) goes through the
`TensorCache`, so retraining a gate or scoring a candidate composition touches
only cached tensors and costs the same whatever the experts' size. A gate
trained on the very same inputs is trained once: the candidate a validation
trains is the gate the next retrain stores when the accepted set is the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import torch

from ...cache import TensorCache, texts_hash
from ...config import ClassifierRouting, GateConfig, TrainConfig, to_dict
from ...gate import Gate
from ...gate_training import domain_rows, train_gate, warm_start
from ...losses import mixture_probs
from ...splits import DomainData
from .calibration import (
    SIGNALS_PER_EXPERT,
    calibrated,
    fit_temperatures,
    gate_inputs,
    label_masks,
)
from .encoder import GATE_MEAN, BaseEncoder
from .experts import ClassifierExpert
from .model import MoEClassifier, union_labels
from .scoring import accuracy, evaluate_predictions


def _log_softmax_on(module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Run a module where its weights are (never moving them) and return CPU log-probs."""
    device = next(module.parameters()).device
    return torch.log_softmax(module(inputs.to(device)), -1).cpu()


@torch.inference_mode()
def expert_log_probs(
    expert: ClassifierExpert,
    encoder: BaseEncoder,
    texts: list[str],
    cache: TensorCache,
    progress=False,
) -> torch.Tensor:
    """An expert's log-probabilities (n, L) over its own labels, computed once."""

    def compute() -> torch.Tensor:
        if expert.architecture == "head":
            feats = cache.features(encoder, texts, progress=progress)
            return _log_softmax_on(expert.head, feats)
        name = expert.adapter_name
        if name not in encoder.adapters:
            encoder.add_lora(name, expert.header.lora, expert.lora_tensors)
        expert.bind(encoder)
        pooled = encoder.embed(
            texts, adapter=name, pool=expert.pool, progress=progress and f"expert {expert.name}"
        )
        return _log_softmax_on(expert.classifier, pooled)

    return cache.expert_outputs(expert.output_key, encoder, texts, compute)


@dataclass
class CachedSplit:
    """One split of every domain, as the tensors a gate trains or is scored on."""

    features: torch.Tensor  # (n, D) mean-pooled, what the head experts read
    expert_probs: torch.Tensor  # (n, N, U)
    targets: torch.Tensor  # (n,) union label index, -1 for a label no expert knows
    domain_idx: torch.Tensor  # (n,)
    domain_experts: torch.Tensor  # (n, N) bool
    domains: list[str]
    domain_labels: list[list[int]]  # union indices of each domain's labels
    gate_features: torch.Tensor  # (n, D) or (n, 3D): what the gate reads of the base pass


def cached_split(
    experts: list[ClassifierExpert],
    expert_domains: list[str],
    data: dict[str, DomainData],
    split: str,
    encoder: BaseEncoder,
    cache: TensorCache,
    progress=False,
    gate_features: str = GATE_MEAN,
) -> CachedSplit:
    labels = union_labels([e.labels for e in experts])
    index = {label: i for i, label in enumerate(labels)}
    domains = list(dict.fromkeys(expert_domains))
    feats, gate_feats, probs, targets, domain_idx = [], [], [], [], []
    for d, domain in enumerate(domains):
        part = getattr(data[domain], split)
        shown = progress and f"{domain} {split}"
        gate_part = cache.gate_features(encoder, part.texts, gate_features, progress=shown)
        gate_feats.append(gate_part)
        feats.append(gate_part[:, : encoder.hidden_size])  # the mean-pooled columns come first
        block = torch.zeros(len(part), len(experts), len(labels))
        for k, expert in enumerate(experts):
            lp = expert_log_probs(expert, encoder, part.texts, cache, progress)
            block[:, k, [index[x] for x in expert.labels]] = lp.exp()
        probs.append(block)
        targets.append(torch.tensor([index.get(x, -1) for x in part.labels]))
        domain_idx.append(torch.full((len(part),), d))
    domain_idx_t, domain_experts = domain_rows(domain_idx, domains, expert_domains)
    return CachedSplit(
        features=torch.cat(feats),
        expert_probs=torch.cat(probs),
        targets=torch.cat(targets),
        domain_idx=domain_idx_t,
        domain_experts=domain_experts,
        domains=domains,
        domain_labels=[[index[x] for x in data[d].labels if x in index] for d in domains],
        gate_features=torch.cat(gate_feats),
    )


def evaluate_cached(model: MoEClassifier, split: CachedSplit, top_k=None) -> dict:
    """The held-out report of `model` on a split built with its `gate_features`."""
    probs, weights = model.mix_cached(split.gate_features, split.expert_probs, top_k)
    return evaluate_predictions(
        probs, weights, split.targets, split.domain_idx, split.domains, split.domain_labels
    )


@dataclass
class Composed:
    """A trained composition with its held-out report and the eval tensors it was scored
    on (what the contributions are measured on, without building them again)."""

    model: MoEClassifier
    report: dict
    eval_split: CachedSplit


def compose(
    encoder: BaseEncoder,
    experts: list[ClassifierExpert],
    expert_domains: list[str],
    data: dict[str, DomainData],
    *,
    cache: TensorCache,
    gate_config: GateConfig | None = None,
    train_config: TrainConfig | None = None,
    routing: ClassifierRouting | None = None,
    previous: MoEClassifier | None = None,
    progress=False,
) -> Composed:
    """Train a gate over `experts` on the router splits and score it on the eval splits.

    `routing` says whether the experts are calibrated, whether the gate reads them (only
    when every expert is a `head`) and whether router examples are drawn in balance
    across domains (it sets `train_config.balance_domains`). With `previous` whose
    experts are the first ones of `experts` (by sha256) and whose gate reads the same
    inputs, the gate warm-starts from its gate; otherwise it starts fresh.
    """
    gate_config = gate_config or (previous.gate.config if previous else GateConfig())
    routing = routing or ClassifierRouting()
    train_config = dataclasses.replace(
        train_config or TrainConfig(), balance_domains=routing.balance_domains
    )
    reads = routing.read_experts and all(e.architecture == "head" for e in experts)
    how = routing.gate_features
    router = cached_split(experts, expert_domains, data, "router", encoder, cache, progress, how)
    keep = router.targets >= 0
    index = {label: i for i, label in enumerate(union_labels([e.labels for e in experts]))}
    masks = label_masks([torch.tensor([index[x] for x in e.labels]) for e in experts], len(index))
    temps = torch.ones(len(experts))
    if routing.calibrate and len(experts) > 1:  # one expert is not mixed: left as it is
        temps = fit_temperatures(router.expert_probs, router.targets, router.domain_experts, masks)
    probs = calibrated(router.expert_probs, temps, masks)
    inputs = gate_inputs(router.gate_features, probs, masks, reads)
    side_dim = SIGNALS_PER_EXPERT * len(experts) if reads else 0
    old = [e.sha256 for e in previous.experts] if previous else []
    if previous is not None and (previous.reads_experts, previous.gate_features) != (reads, how):
        old = []  # the previous gate read other inputs: start fresh
    start = None  # how the gate starts: fresh, warm-started from `previous`, or `previous`
    if old and [e.sha256 for e in experts[: len(old)]] == old and len(experts) > len(old):
        start = "warm"
    elif old and [e.sha256 for e in experts] == old:
        start = "previous"

    def train() -> tuple[Gate, dict]:
        init = None
        if start == "warm":
            new = range(len(old), len(experts))
            new_inputs = [inputs[router.domain_experts[:, k]] for k in new]
            old_rows = router.domain_experts[:, : len(old)].any(-1)
            init = warm_start(previous.gate.widened(side_dim), new_inputs, inputs[old_rows])
        elif start == "previous":
            init = previous.gate
        return train_gate(
            inputs[keep],
            probs[keep],
            router.targets[keep],
            router.domain_experts[keep],
            domain_idx=router.domain_idx[keep],
            gate_config=gate_config,
            train_config=train_config,
            init=init,
            side_dim=side_dim,
            progress=progress,
        )

    key = _gate_key(encoder, experts, expert_domains, data, gate_config, train_config, routing)
    origin = "" if start is None else f"{start}:{_gate_digest(previous.gate)}"
    gate, log, reused = cache.trained_gate((key, origin), train)
    info = {
        "train": to_dict(train_config),
        "routing": to_dict(routing),
        "warm_start": start is not None,
        "gate_seconds": log["seconds"],
        "gate_reused": reused,
        "final_losses": log["final"],
    }
    model = MoEClassifier(
        encoder,
        experts,
        expert_domains,
        gate,
        domain_labels={d: data[d].labels for d in router.domains},
        info=info,
        temperatures=temps,
        reads_experts=reads,
        gate_features=how,
    )
    evaluation = cached_split(experts, expert_domains, data, "eval", encoder, cache, progress, how)
    report = evaluate_cached(model, evaluation)
    model.info["metrics"] = report
    return Composed(model, report, evaluation)


def _gate_key(encoder, experts, expert_domains, data, gate_config, train_config, routing) -> str:
    """Everything a trained gate depends on, by the cache keys of its inputs."""
    domains = list(dict.fromkeys(expert_domains))
    return json.dumps(
        {
            "base": encoder.fingerprint,
            "router": [
                [d, texts_hash(data[d].router.texts), texts_hash(data[d].router.labels)]
                for d in domains
            ],
            "labels": {d: list(data[d].labels) for d in domains},
            "experts": [
                [e.output_key, d, e.labels] for e, d in zip(experts, expert_domains, strict=True)
            ],
            "gate": to_dict(gate_config),
            "train": to_dict(train_config),
            "routing": to_dict(routing),
        },
        sort_keys=True,
    )


def _gate_digest(gate: Gate) -> str:
    """The trained values of a gate, as a hash."""
    h = hashlib.sha256(json.dumps(to_dict(gate.config), sort_keys=True).encode())
    for name, value in sorted(gate.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.inference_mode()
def contributions(composed: Composed) -> list[dict]:
    """Each expert's share of traffic and the drop in overall accuracy without it (in gate
    order): the held-out examples it served go to the remaining experts the gate chose."""
    model, split, report = composed.model, composed.eval_split, composed.report
    _, weights = model.mix_cached(split.gate_features, split.expert_probs)
    full = report["overall"]["accuracy"]
    n_experts = len(model.experts)
    gate_probs = model.gate_probs(split.gate_features, split.expert_probs)
    expert_probs = model.calibrated(split.expert_probs)
    out = []
    for k in range(n_experts):
        w = weights.clone()
        w[:, k] = 0
        total = w.sum(-1, keepdim=True)
        # examples routed only to this expert fall back to the gate's dense choice
        dense = gate_probs.clone()
        dense[:, k] = 0
        left = dense.sum(-1, keepdim=True)
        w = torch.where(total > 0, w / total.clamp(min=1e-12), dense / left.clamp(min=1e-12))
        pred = mixture_probs(w, expert_probs).argmax(-1)
        pred[w.sum(-1) == 0] = -1  # no expert left for these examples: no answer
        without = accuracy(pred, split.targets)
        out.append({"drop": full - without, "share": report["utilisation"]["load"][k]})
    return out
