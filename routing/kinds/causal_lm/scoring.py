"""Scores of language-model experts and compositions: held-out perplexity of each text's
continuation after the router's prefix, per domain and overall, against the base
model and against each expert alone; routing accuracy, utilisation, routing matrix."""

from __future__ import annotations

import math

import torch

from ...metrics import routing_matrix, utilisation


def mixture_log_probs(weights: torch.Tensor, token_lp: torch.Tensor) -> torch.Tensor:
    """log p(x_t) = log sum_k g_k p_k(x_t | x_<t) at every scored position.

    weights (n, N), token_lp (n, N, T) with NaN where a text has no token, or where an
    expert with weight 0 did not run -> (n, T).
    """
    logw = torch.where(weights > 0, weights.clamp(min=1e-30).log(), -math.inf)  # (n, N)
    missing = torch.isnan(token_lp).all(1)  # (n, T)
    mixed = torch.logsumexp(logw[:, :, None] + torch.nan_to_num(token_lp, nan=0.0), dim=1)
    return torch.where(missing, torch.full_like(mixed, math.nan), mixed)  # (n, T)


def perplexity(token_lp: torch.Tensor) -> float:
    """exp of the mean negative log-likelihood over every token that is there (not NaN)."""
    keep = ~torch.isnan(token_lp)
    return float(torch.exp(-token_lp[keep].mean())) if keep.any() else math.nan


def evaluate_weights(weights: torch.Tensor, split, experts) -> dict:
    """The held-out report of a composition that routed `split`'s texts with `weights`."""
    mixed = mixture_log_probs(weights, split.token_lp)  # (n, T)
    per_domain = {}
    for d, name in enumerate(split.domains):
        rows = split.domain_idx == d
        per_domain[name] = {
            "n": int(rows.sum()),
            "tokens": int((~torch.isnan(split.base_lp[rows])).sum()),
            "perplexity": perplexity(mixed[rows]),
            "base_perplexity": perplexity(split.base_lp[rows]),
            "experts": [perplexity(split.token_lp[rows, k]) for k in range(len(experts))],
        }
    top = weights.argmax(-1)  # (n,)
    routed_home = split.domain_experts[torch.arange(len(top)), top].float()
    overall_ppl = perplexity(mixed)
    return {
        "overall": {
            "n": len(weights),
            "tokens": int((~torch.isnan(split.base_lp)).sum()),
            "perplexity": overall_ppl,
            "base_perplexity": perplexity(split.base_lp),
            "domain_mean_perplexity": sum(v["perplexity"] for v in per_domain.values())
            / max(len(per_domain), 1),
            "routing_accuracy": float(routed_home.mean()) if len(top) else math.nan,
        },
        "domains": per_domain,
        "domain_order": list(split.domains),
        "utilisation": utilisation(weights),
        "routing_matrix": routing_matrix(weights, split.domain_idx, len(split.domains)),
    }
