"""Training the gate on cached tensors only (every kind of mixture), and warm starts."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .config import GateConfig, TrainConfig
from .gate import Gate
from .losses import label_nll, routing_losses


def domain_rows(
    row_domains: list[torch.Tensor], domains: list[str], expert_domains: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,) each row's domain index and (n, N) whether each expert is its domain's own, from
    the per-domain index tensors of a split."""
    domain_idx = torch.cat(row_domains)
    owner = torch.tensor([domains.index(d) for d in expert_domains])  # (N,)
    return domain_idx, domain_idx[:, None] == owner[None, :]


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def _epoch_batches(n: int, tc: TrainConfig, g: torch.Generator, domain_idx=None, draws=None):
    """One epoch's batches of example indices: `draws` examples (all n by default) in a
    random order, or, with `balance_domains`, drawn with equal total weight per domain."""
    draws = n if draws is None else draws
    if not tc.balance_domains or domain_idx is None:
        order = torch.randperm(n, generator=g)[:draws]
    else:
        counts = torch.bincount(domain_idx).float()
        weights = 1.0 / counts[domain_idx]  # (n,)
        order = torch.multinomial(weights, draws, replacement=True, generator=g)
    for start in range(0, draws, tc.batch_size):
        yield order[start : start + tc.batch_size]


def warm_start(
    previous: Gate,
    new_domain_features: list[torch.Tensor],
    old_features: torch.Tensor,
    *,
    steps: int = 300,
    lr: float = 0.1,
    max_examples: int = 2048,
) -> Gate:
    """Extend a trained gate by one output per new expert, keeping the old routing.

    Old parameters are copied unchanged. Only the new output rows are fitted,
    full-batch on cached features, to send each new domain to its new expert
    while every old example keeps the expert the previous gate chose for it.
    The full retrain then starts from a gate that already routes sensibly.
    """
    previous = previous.cpu().eval()
    n_old = previous.n_experts
    g = torch.Generator().manual_seed(0)

    def sample(x: torch.Tensor) -> torch.Tensor:  # a fixed random subset bounds the cost
        return (
            x if len(x) <= max_examples else x[torch.randperm(len(x), generator=g)[:max_examples]]
        )

    old_features = sample(old_features)
    new_domain_features = [sample(f) for f in new_domain_features]
    with torch.no_grad():
        reps = [previous.represent(old_features)] + [
            previous.represent(f) for f in new_domain_features
        ]  # [(n_i, H)]
        h = torch.cat(reps)  # (n, H)
        old_logits = previous.out(h)  # (n, N_old), fixed
        targets = torch.cat(
            [old_logits[: len(old_features)].argmax(-1)]
            + [torch.full((len(f),), n_old + i) for i, f in enumerate(new_domain_features)]
        )  # (n,)
    rows = torch.zeros(len(new_domain_features), h.shape[1], requires_grad=True)
    biases = previous.out.bias.detach().mean().repeat(len(new_domain_features)).requires_grad_()
    opt = torch.optim.Adam([rows, biases], lr=lr)
    for _ in range(steps):
        logits = torch.cat([old_logits, h @ rows.T + biases], dim=-1)  # (n, N_old + n_new)
        loss = nn.functional.cross_entropy(logits, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return previous.expanded(rows.detach(), biases.detach())


def train_gate(
    features: torch.Tensor,  # (n, D) base features of router examples
    expert_probs: torch.Tensor,  # (n, N, U) cached expert distributions in the union space
    targets: torch.Tensor,  # (n,) union label index
    domain_experts: torch.Tensor,  # (n, N) bool: expert serves the example's domain
    **options,
) -> tuple[Gate, dict]:
    """`fit_gate` for a classifier mixture: the task term is the mixture's label NLL."""

    def task(weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return label_nll(weights, expert_probs[idx], targets[idx])

    return fit_gate(features, domain_experts, task, **options)


def fit_gate(
    features: torch.Tensor,  # (n, D) base features of router examples
    domain_experts: torch.Tensor,  # (n, N) bool: expert serves the example's domain
    task: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],  # (weights (B, N), idx) -> loss
    *,
    gate_config: GateConfig | None = None,
    train_config: TrainConfig | None = None,
    init: Gate | None = None,
    domain_idx: torch.Tensor | None = None,  # (n,) needed for `balance_domains`
    side_dim: int = 0,  # the last `side_dim` input columns are side signals (see `Gate`)
    progress: bool = False,
) -> tuple[Gate, dict]:
    """Train (or fine-tune `init`) a gate on cached tensors only; experts stay frozen.

    `task` is the kind's task term on a batch of examples (`idx`) routed with top-k
    `weights`: what the mixture's output costs; the routing terms are shared
    (`routing.losses.routing_losses`). With `train_config.balance_domains`, each epoch
    draws its examples with probability inversely proportional to their domain's size,
    so a small domain is not out-voted by the large ones when the gate learns to route.
    """
    tc = train_config or TrainConfig()
    torch.manual_seed(tc.seed)
    g = torch.Generator().manual_seed(tc.seed)
    n_experts = domain_experts.shape[1]
    if init is not None:
        gate = copy.deepcopy(init).cpu()
        if gate_config is not None:
            gate.config = gate_config
    else:
        gate = Gate(features.shape[1] - side_dim, n_experts, gate_config, side_dim)
    if gate.n_experts != n_experts:
        raise ValueError(f"the gate has {gate.n_experts} outputs for {n_experts} experts")
    if (gate.in_dim + gate.side_dim, gate.side_dim) != (features.shape[1], side_dim):
        raise ValueError(
            f"the gate reads {gate.in_dim} features and {gate.side_dim} side signals, not "
            f"{features.shape[1] - side_dim} and {side_dim}"
        )
    opt = torch.optim.AdamW(gate.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    domain_experts = domain_experts.float()
    history = []
    started = time.perf_counter()
    gate.train()
    # Large router sets are sampled, not run through whole: an epoch draws at most
    # `max_steps_per_epoch` batches and training sees at most `example_budget` examples,
    # so retraining stays fast as a mixture grows (8 experts x 20,000 examples: 360 steps).
    draws = min(len(features), tc.max_steps_per_epoch * tc.batch_size)
    per_epoch = max(1, math.ceil(draws / tc.batch_size))
    epochs = min(tc.epochs, max(1, tc.example_budget // max(draws, 1)))
    epochs = max(epochs, math.ceil(tc.min_steps / per_epoch))
    for epoch in tqdm(range(epochs), desc="training gate", unit="epoch", disable=not progress):
        sums: dict[str, float] = {}
        batches = 0
        for idx in _epoch_batches(len(features), tc, g, domain_idx, draws):
            out = gate(features[idx])
            losses = routing_losses(
                out, task(out.weights, idx), domain_experts[idx], tc.loss, gate.config.top_k
            )
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.detach()
            batches += 1
        means = {k: float(v) / max(batches, 1) for k, v in sums.items()}
        history.append({"epoch": epoch, **means})
    gate.eval().requires_grad_(False)
    return gate, {
        "seconds": time.perf_counter() - started,
        "history": history,
        "final": history[-1] if history else {},
    }
