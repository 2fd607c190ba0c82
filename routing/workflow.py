"""From experts and domain data to a trained, evaluated composition.

Everything expensive (base features, expert outputs) goes through the
`TensorCache`, so retraining a gate or scoring a candidate composition touches
only cached tensors and costs the same whatever the experts' size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BaseEncoder
from .cache import TensorCache
from .compose import Composition, adapter_name, union_labels
from .config import GateConfig, TrainConfig, to_dict
from .data import DomainData
from .experts import Expert
from .gate import Gate
from .metrics import evaluate_predictions
from .train import train_gate, warm_start


def _log_softmax_on(module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Run a module where its weights are (never moving them) and return CPU log-probs."""
    device = next(module.parameters()).device
    return torch.log_softmax(module(inputs.to(device)), -1).cpu()


@torch.inference_mode()
def expert_log_probs(
    expert: Expert, encoder: BaseEncoder, texts: list[str], cache: TensorCache, progress=False
) -> torch.Tensor:
    """An expert's log-probabilities (n, L) over its own labels, computed once."""

    def compute() -> torch.Tensor:
        if expert.kind == "head":
            feats = cache.features(encoder, texts, progress=progress)
            return _log_softmax_on(expert.head, feats)
        name = adapter_name(expert)
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

    features: torch.Tensor  # (n, D)
    expert_probs: torch.Tensor  # (n, N, U)
    targets: torch.Tensor  # (n,) union label index, -1 for a label no expert knows
    domain_idx: torch.Tensor  # (n,)
    domain_experts: torch.Tensor  # (n, N) bool
    domains: list[str]
    domain_labels: list[list[int]]  # union indices of each domain's labels


def cached_split(
    experts: list[Expert],
    expert_domains: list[str],
    data: dict[str, DomainData],
    split: str,
    encoder: BaseEncoder,
    cache: TensorCache,
    progress=False,
) -> CachedSplit:
    labels = union_labels([e.labels for e in experts])
    index = {label: i for i, label in enumerate(labels)}
    domains = list(dict.fromkeys(expert_domains))
    feats, probs, targets, domain_idx = [], [], [], []
    for d, domain in enumerate(domains):
        part = getattr(data[domain], split)
        feats.append(cache.features(encoder, part.texts, progress=progress and f"{domain} {split}"))
        block = torch.zeros(len(part), len(experts), len(labels))
        for k, expert in enumerate(experts):
            lp = expert_log_probs(expert, encoder, part.texts, cache, progress)
            block[:, k, [index[x] for x in expert.labels]] = lp.exp()
        probs.append(block)
        targets.append(torch.tensor([index.get(x, -1) for x in part.labels]))
        domain_idx.append(torch.full((len(part),), d))
    domain_idx_t = torch.cat(domain_idx)
    owner = torch.tensor([domains.index(d) for d in expert_domains])  # (N,)
    return CachedSplit(
        features=torch.cat(feats),
        expert_probs=torch.cat(probs),
        targets=torch.cat(targets),
        domain_idx=domain_idx_t,
        domain_experts=domain_idx_t[:, None] == owner[None, :],
        domains=domains,
        domain_labels=[[index[x] for x in data[d].labels if x in index] for d in domains],
    )


def evaluate_cached(composition: Composition, split: CachedSplit, top_k=None) -> dict:
    probs, weights = composition.mix_cached(split.features, split.expert_probs, top_k)
    return evaluate_predictions(
        probs, weights, split.targets, split.domain_idx, split.domains, split.domain_labels
    )


def compose(
    encoder: BaseEncoder,
    experts: list[Expert],
    expert_domains: list[str],
    data: dict[str, DomainData],
    *,
    cache: TensorCache,
    gate_config: GateConfig | None = None,
    train_config: TrainConfig | None = None,
    previous: Composition | None = None,
    progress=False,
) -> tuple[Composition, dict]:
    """Train a gate over `experts` on the router splits and score it on the eval splits.

    With `previous` whose experts are the first ones of `experts` (by sha256),
    the gate warm-starts from its gate; otherwise it starts fresh.
    """
    gate_config = gate_config or (previous.gate.config if previous else GateConfig())
    router = cached_split(experts, expert_domains, data, "router", encoder, cache, progress)
    keep = router.targets >= 0
    init: Gate | None = None
    old = [e.sha256 for e in previous.experts] if previous else []
    if old and [e.sha256 for e in experts[: len(old)]] == old and len(experts) > len(old):
        new = range(len(old), len(experts))
        new_feats = [router.features[router.domain_experts[:, k]] for k in new]
        old_rows = router.domain_experts[:, : len(old)].any(-1)
        init = warm_start(previous.gate, new_feats, router.features[old_rows])
    elif old and [e.sha256 for e in experts] == old:
        init = previous.gate
    gate, log = train_gate(
        router.features[keep],
        router.expert_probs[keep],
        router.targets[keep],
        router.domain_experts[keep],
        domain_idx=router.domain_idx[keep],
        gate_config=gate_config,
        train_config=train_config,
        init=init,
        progress=progress,
    )
    info = {
        "train": to_dict(train_config or TrainConfig()),
        "warm_start": init is not None,
        "gate_seconds": log["seconds"],
        "final_losses": log["final"],
    }
    composition = Composition(
        encoder,
        experts,
        expert_domains,
        gate,
        domain_labels={d: data[d].labels for d in router.domains},
        info=info,
    )
    report = evaluate_cached(
        composition, cached_split(experts, expert_domains, data, "eval", encoder, cache, progress)
    )
    composition.info["metrics"] = report
    return composition, report


def train_expert_file(
    encoder: BaseEncoder,
    data: DomainData,
    path,
    *,
    kind: str = "head",
    cache: TensorCache,
    seed: int = 0,
    progress=False,
    **options,
) -> dict:
    """Train an expert on a domain's training split and write it as a contract file.

    Returns a summary with the expert's accuracy on the domain's eval split.
    """
    import time

    from .experts import load_expert, save_head_expert, save_lora_expert
    from .metrics import accuracy
    from .train import train_head, train_lora

    index = {label: i for i, label in enumerate(data.labels)}
    targets = torch.tensor([index[x] for x in data.train.labels])
    started = time.perf_counter()
    if kind == "head":
        feats = cache.features(encoder, data.train.texts, progress=progress and "embedding train")
        head = train_head(feats, targets, len(data.labels), seed=seed, progress=progress, **options)
        save_head_expert(path, head, labels=data.labels, base_model=encoder.name, domain=data.name)
    elif kind == "lora":
        r = options.pop("r", 8)
        alpha = options.pop("alpha", 2.0 * r)
        targets_modules = tuple(options.pop("target_modules", ("query", "value")))
        probe = cache.features(encoder, data.train.texts, progress=progress and "embedding train")
        lora, classifier = train_lora(
            encoder,
            data.train.texts,
            targets,
            len(data.labels),
            r=r,
            alpha=alpha,
            target_modules=targets_modules,
            seed=seed,
            probe_features=probe,
            progress=progress,
            **options,
        )
        save_lora_expert(
            path,
            lora_tensors=lora,
            classifier=classifier,
            r=r,
            alpha=alpha,
            target_modules=list(targets_modules),
            labels=data.labels,
            base_model=encoder.name,
            domain=data.name,
        )
    else:
        raise ValueError(f"unknown expert kind {kind!r}; use head or lora")
    seconds = time.perf_counter() - started
    expert = load_expert(path, base=encoder.spec, labels=data.labels)
    lp = expert_log_probs(expert, encoder, data.eval.texts, cache, progress)
    truth = torch.tensor([index.get(x, -1) for x in data.eval.labels])
    return {
        "path": str(path),
        "kind": kind,
        "domain": data.name,
        "train_examples": len(data.train),
        "train_seconds": seconds,
        "eval_examples": len(data.eval),
        "eval_accuracy": accuracy(lp.argmax(-1), truth),
        "parameters": expert.header.num_parameters,
    }
