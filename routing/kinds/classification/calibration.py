"""What a classification gate can read from its experts, and expert calibration.

Every tensor here is in the union label space: expert_probs (n, N, U), each expert's
distribution placed in the columns of its own labels (`masks`, (N, U) bool) and zero
elsewhere.

- `fit_temperatures`: one temperature per expert, the one of a log-spaced grid with the
  lowest negative log-likelihood on its own domain's router examples, so that a
  confident wrong expert does not outvote the right one when they are mixed.
- `expert_signals`: two numbers per expert that the gate reads beside the base features:
  its top probability and its entropy over its own labels divided by log(label count),
  in expert order ([top_1, entropy_1, top_2, entropy_2, ...]), so that the signals of an
  expert that joins are appended and a warm-started gate keeps reading the old ones.
"""

from __future__ import annotations

import math

import torch

SIGNALS_PER_EXPERT = 2
# 0.25 .. 4 in 33 log-spaced steps (about 9 % apart); 1.0 is on the grid
TEMPERATURE_GRID = torch.logspace(math.log10(0.25), math.log10(4.0), 33)
NEG = -1e9  # a log-probability that softmax turns into exactly 0


def label_masks(label_index: list[torch.Tensor], n_labels: int) -> torch.Tensor:
    """(N, U) bool: which union labels each expert knows, from each expert's union columns."""
    masks = torch.zeros(len(label_index), n_labels, dtype=torch.bool)
    for k, cols in enumerate(label_index):
        masks[k, cols] = True
    return masks


def _log_probs(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return probs.clamp_min(1e-12).log().masked_fill(~mask, NEG)


def fit_temperatures(
    expert_probs: torch.Tensor,  # (n, N, U)
    targets: torch.Tensor,  # (n,) union label index, -1 where no expert knows the label
    domain_experts: torch.Tensor,  # (n, N) bool: the expert serves the example's domain
    masks: torch.Tensor,  # (N, U) bool
) -> torch.Tensor:
    """(N,) each expert's temperature; 1.0 for an expert without labelled examples of its
    own domain."""
    temps = torch.ones(expert_probs.shape[1])
    for k in range(expert_probs.shape[1]):
        rows = domain_experts[:, k] & (targets >= 0)
        rows[rows.clone()] = masks[k, targets[rows]]  # only labels the expert knows
        if not rows.any():
            continue
        lp = _log_probs(expert_probs[rows, k], masks[k])  # (m, U)
        target = targets[rows, None]
        nll = torch.stack(
            [-torch.log_softmax(lp / t, -1).gather(1, target).mean() for t in TEMPERATURE_GRID]
        )
        temps[k] = TEMPERATURE_GRID[int(nll.argmin())]
    return temps


def calibrated(expert_probs: torch.Tensor, temps: torch.Tensor, masks: torch.Tensor):
    """expert_probs with each expert's distribution sharpened or flattened by its
    temperature (zero outside its labels, as before)."""
    if bool((temps == 1).all()):
        return expert_probs
    masks = masks.to(expert_probs.device)
    lp = _log_probs(expert_probs, masks[None]) / temps.to(expert_probs.device)[None, :, None]
    return torch.softmax(lp, -1) * masks[None]


def expert_signals(expert_probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(n, 2N): each expert's top probability and normalised entropy, interleaved."""
    p = expert_probs
    top = p.max(-1).values  # (n, N)
    sizes = masks.sum(-1).clamp_min(2).to(p)  # (N,)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1) / sizes.log()  # (n, N)
    return torch.stack([top, entropy], dim=-1).flatten(1)  # (n, 2N)


def gate_inputs(features: torch.Tensor, expert_probs, masks, reads_experts: bool):
    """What a gate reads: the features (n, D) and, if it reads its experts, the signals of
    their (calibrated) distributions expert_probs (n, N, U)."""
    if not reads_experts:
        return features
    signals = expert_signals(expert_probs.cpu(), masks)
    return torch.cat([features, signals.to(features)], dim=-1)
