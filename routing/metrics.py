"""Routing statistics every kind of mixture reports: utilisation and the routing matrix."""

from __future__ import annotations

import math

import torch


def utilisation(weights: torch.Tensor) -> dict:
    """Load statistics of routing weights (n, N): each example spreads 1 over its experts.

    load[i]: share of routed traffic that expert i receives; entropy: H(load)/log N
    (1.0 = perfectly balanced); under_1pct: experts receiving under 1 % of it.
    """
    n_experts = weights.shape[1]
    load = weights.float().mean(0) if len(weights) else torch.zeros(n_experts)
    h = float(-(load * (load + 1e-12).log()).sum())
    return {
        "load": [round(float(x), 6) for x in load],
        "entropy": h / math.log(n_experts) if n_experts > 1 else 1.0,
        "under_1pct": int((load < 0.01).sum()),
    }


def routing_matrix(weights: torch.Tensor, domain_idx: torch.Tensor, n_domains: int) -> list:
    """Mean routing weight per (domain, expert); each row sums to 1."""
    rows = []
    for d in range(n_domains):
        mask = domain_idx == d
        row = weights[mask].float().mean(0) if mask.any() else torch.zeros(weights.shape[1])
        rows.append([round(float(x), 6) for x in row])
    return rows
