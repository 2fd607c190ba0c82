"""From language-model experts and text domains to a trained, evaluated composition.

Everything expensive is computed once and cached (`TensorCache`): the base's prefix
features of every text, and each expert's (and the base's) log-probability of every
scored token. The gate then trains on cached tensors only: adding an expert costs one
scoring pass of that expert, never a pass of the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ...cache import TensorCache, texts_hash
from ...config import GateConfig, LMRouting, TrainConfig, to_dict
from ...gate_training import domain_rows, fit_gate, warm_start
from ...splits import DomainData
from .base import CausalBase, prefix_log_likelihood
from .experts import LMExpert
from .model import MoECausalLM
from .scoring import evaluate_weights, mixture_log_probs


@torch.inference_mode()
def token_log_probs(
    expert: LMExpert | None, base: CausalBase, texts: list[str], cache: TensorCache,
    prefix_tokens: int, progress=False,
) -> torch.Tensor:  # fmt: skip
    """(n, T) log-probabilities of each text's scored tokens under an expert (None: the
    base), computed once; NaN where a text has no token."""

    def compute() -> torch.Tensor:
        name = expert.attach(base) if expert is not None else None
        desc = progress and f"scoring with {expert.name if expert else 'the base'}"
        return base.token_log_probs(texts, prefix_tokens=prefix_tokens, expert=name, progress=desc)

    key = expert.output_key if expert is not None else "base"
    return cache.get_or_compute(
        "outputs",
        (f"lm-tokens:{key}", base.fingerprint, texts_hash(texts), str(prefix_tokens)),
        compute,
    )


def prefix_features(base, texts, cache: TensorCache, routing: LMRouting, progress=False):
    """(n, D) the router's input for every text, computed once per base and dataset."""
    return cache.get_or_compute(
        "features",
        (base.fingerprint, texts_hash(texts), f"prefix{routing.prefix_tokens}:{routing.layer}"),
        lambda: base.prefix_features(
            texts, prefix_tokens=routing.prefix_tokens, layer=routing.layer, progress=progress
        ),
    )


@torch.inference_mode()
def prefix_likelihoods(experts, base, texts, cache: TensorCache, routing: LMRouting):
    """(n, N) log p(prefix) under each expert (what prefix-likelihood routing reads)."""
    columns = []
    for expert in experts:
        name = expert.attach(base)
        columns.append(
            cache.get_or_compute(
                "outputs",
                (
                    f"lm-prefix:{expert.output_key}",
                    base.fingerprint,
                    texts_hash(texts),
                    str(routing.prefix_tokens),
                ),  # fmt: skip
                lambda name=name: prefix_log_likelihood(
                    base, texts, prefix_tokens=routing.prefix_tokens, expert=name
                ),
            )
        )
    return torch.stack(columns, 1)


@dataclass
class LMSplit:
    """One split of every domain, as the tensors a gate trains or is scored on."""

    features: torch.Tensor  # (n, D) prefix features
    token_lp: torch.Tensor  # (n, N, T) each expert's log p of each scored token; NaN: none
    base_lp: torch.Tensor  # (n, T) the base's
    domain_idx: torch.Tensor  # (n,)
    domain_experts: torch.Tensor  # (n, N) bool
    domains: list[str]
    prefix_ll: torch.Tensor | None = None  # (n, N), when the router reads it

    @property
    def mask(self) -> torch.Tensor:  # (n, T) the scored tokens
        return ~torch.isnan(self.base_lp)


def cached_split(experts, expert_domains, data, split, base, cache, routing, progress=False):
    domains = list(dict.fromkeys(expert_domains))
    feats, lps, base_lps, domain_idx, prefix = [], [], [], [], []
    for d, domain in enumerate(domains):
        texts = getattr(data[domain], split).texts
        feats.append(prefix_features(base, texts, cache, routing, progress and f"{domain} {split}"))
        p = routing.prefix_tokens
        lps.append(torch.stack([token_log_probs(e, base, texts, cache, p) for e in experts], 1))
        base_lps.append(token_log_probs(None, base, texts, cache, p))
        domain_idx.append(torch.full((len(texts),), d))
        if routing.router == "prefix-likelihood":
            prefix.append(prefix_likelihoods(experts, base, texts, cache, routing))
    domain_idx_t, domain_experts = domain_rows(domain_idx, domains, expert_domains)
    return LMSplit(
        features=torch.cat(feats),
        token_lp=torch.cat(lps),
        base_lp=torch.cat(base_lps),
        domain_idx=domain_idx_t,
        domain_experts=domain_experts,
        domains=domains,
        prefix_ll=torch.cat(prefix) if prefix else None,
    )


def token_nll(weights: torch.Tensor, token_lp: torch.Tensor) -> torch.Tensor:
    """The mixture's mean negative log-likelihood per scored token (the task term)."""
    lp = mixture_log_probs(weights, token_lp)  # (B, T)
    keep = ~torch.isnan(lp)
    return -lp[keep].mean() if keep.any() else lp.new_zeros(())


def token_task(token_lp: torch.Tensor):
    """The gate's task term on cached log-probabilities (n, N, T): `task(weights, idx)`,
    with the NaN padding resolved once rather than at every step."""
    keep = ~torch.isnan(token_lp).all(1)  # (n, T)
    filled = torch.nan_to_num(token_lp, nan=0.0)  # (n, N, T)

    def task(weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        logw = torch.where(weights > 0, weights.clamp(min=1e-30).log(), -torch.inf)  # (B, N)
        mixed = torch.logsumexp(logw[:, :, None] + filled[idx], dim=1)  # (B, T)
        k = keep[idx]
        return -(mixed * k).sum() / k.sum().clamp(min=1)

    return task


@dataclass
class Composed:
    model: MoECausalLM
    report: dict
    eval_split: LMSplit
    eval_texts: dict[str, list[str]] | None = None  # per domain, for what re-scores them


def compose(
    base: CausalBase,
    experts: list[LMExpert],
    expert_domains: list[str],
    data: dict[str, DomainData],
    *,
    cache: TensorCache,
    gate_config: GateConfig | None = None,
    train_config: TrainConfig | None = None,
    routing: LMRouting | None = None,
    previous: MoECausalLM | None = None,
    progress=False,
) -> Composed:
    """Route `experts` (a learned gate trained on the router splits, warm-started from
    `previous` when its experts come first; or a training-free router) and score the
    composition on the eval splits."""
    routing = routing or (previous.routing if previous else LMRouting())
    gate_config = gate_config or (previous.gate.config if previous and previous.gate else None)
    gate_config = gate_config or GateConfig()
    train_config = train_config or TrainConfig()
    router = cached_split(experts, expert_domains, data, "router", base, cache, routing, progress)
    gate, centroids, info = None, None, {"router": routing.router}
    if routing.router == "learned":
        gate, info = _learned_gate(
            base, experts, expert_domains, data, router, cache, gate_config, train_config,
            routing, previous, progress,
        )  # fmt: skip
    elif routing.router == "centroid":
        centroids = torch.stack(
            [router.features[router.domain_experts[:, k]].mean(0) for k in range(len(experts))]
        )  # (N, D): mergekit's "hidden" gate, no training
    model = MoECausalLM(
        base, experts, expert_domains, routing=routing, gate=gate, centroids=centroids,
        top_k=gate_config.top_k, info=info,
    )  # fmt: skip
    evaluation = cached_split(experts, expert_domains, data, "eval", base, cache, routing, progress)
    report = evaluate_weights(model.cached_weights(evaluation), evaluation, experts)
    model.info["metrics"] = report
    return Composed(model, report, evaluation)


def _learned_gate(
    base, experts, expert_domains, data, router, cache, gate_config, train_config, routing,
    previous, progress,
):  # fmt: skip
    old = [e.sha256 for e in previous.experts] if previous and previous.gate else []
    start = None
    if old and [e.sha256 for e in experts[: len(old)]] == old and len(experts) > len(old):
        start = "warm"
    elif old and [e.sha256 for e in experts] == old:
        start = "previous"

    def train():
        init = None
        if start == "warm":
            new = range(len(old), len(experts))
            new_feats = [router.features[router.domain_experts[:, k]] for k in new]
            old_rows = router.domain_experts[:, : len(old)].any(-1)
            init = warm_start(previous.gate, new_feats, router.features[old_rows])
        elif start == "previous":
            init = previous.gate
        return fit_gate(
            router.features,
            router.domain_experts,
            token_task(router.token_lp),
            domain_idx=router.domain_idx,
            gate_config=gate_config,
            train_config=train_config,
            init=init,
            progress=progress,
        )

    key = json.dumps(
        {
            "base": base.fingerprint,
            "routing": to_dict(routing),
            "router": [
                [d, texts_hash(data[d].router.texts)] for d in dict.fromkeys(expert_domains)
            ],
            "experts": [[e.output_key, d] for e, d in zip(experts, expert_domains, strict=True)],
            "gate": to_dict(gate_config),
            "train": to_dict(train_config),
        },
        sort_keys=True,
    )
    origin = "" if start is None else f"{start}:{previous.gate_digest()}"
    gate, log, reused = cache.trained_gate((key, origin), train)
    return gate, {
        "router": "learned",
        "train": to_dict(train_config),
        "warm_start": start is not None,
        "gate_seconds": log["seconds"],
        "gate_reused": reused,
        "final_losses": log["final"],
    }


@torch.inference_mode()
def contributions(composed: Composed) -> list[dict]:
    """Each expert's share of traffic and how much the overall perplexity rises without it
    (in perplexity points; positive: the expert helps): the held-out texts it served go
    to the remaining experts the router chose, or to its next choice."""
    model, split, report = composed.model, composed.eval_split, composed.report
    weights = model.cached_weights(split)  # (n, N)
    dense = model.cached_weights(split, top_k=len(model.experts))  # (n, N)
    full = report["overall"]["perplexity"]
    out = []
    for k in range(len(model.experts)):
        w, d = weights.clone(), dense.clone()
        w[:, k] = 0
        d[:, k] = 0
        total, left = w.sum(-1, keepdim=True), d.sum(-1, keepdim=True)
        w = torch.where(total > 0, w / total.clamp(min=1e-12), d / left.clamp(min=1e-12))
        nll = token_nll(w, split.token_lp) if len(model.experts) > 1 else None
        without = float(torch.exp(nll)) if nll is not None else _base_ppl(split)
        out.append({"drop": without - full, "share": report["utilisation"]["load"][k]})
    return out


def _base_ppl(split: LMSplit) -> float:
    lp = split.base_lp[split.mask]
    return float(torch.exp(-lp.mean()))
