"""Gate-training losses, each returned by name (docs/routing.md states the signs)."""

from __future__ import annotations

import math

import torch

from .config import LossWeights
from .gate import GateOutput

EPS = 1e-9


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * (p + EPS).log()).sum(dim)


def mixture_probs(weights: torch.Tensor, expert_probs: torch.Tensor) -> torch.Tensor:
    """p(y|x) = sum_k g_k(x) p_k(y|x) in the union label space.

    weights (B, N), expert_probs (B, N, U) -> (B, U).
    """
    return torch.einsum("bn,bnu->bu", weights, expert_probs)


def label_nll(
    weights: torch.Tensor,  # (B, N) routing weights
    expert_probs: torch.Tensor,  # (B, N, U) each expert's distribution in the union space
    targets: torch.Tensor,  # (B,) union label index
) -> torch.Tensor:
    """The classification task term: -log p(y|x) of the mixture, averaged."""
    mix = mixture_probs(weights, expert_probs)  # (B, U)
    return -(mix.gather(1, targets[:, None]).squeeze(1) + EPS).log().mean()


def gate_losses(
    gate_out: GateOutput,
    expert_probs: torch.Tensor,  # (B, N, U) each expert's distribution in the union space
    targets: torch.Tensor,  # (B,) union label index
    domain_experts: torch.Tensor,  # (B, N) True where the expert serves the example's domain
    weights: LossWeights,
    top_k: int = 1,
) -> dict[str, torch.Tensor]:
    """Every term of a classification gate's loss, by name."""
    task = label_nll(gate_out.weights, expert_probs, targets)
    return routing_losses(gate_out, task, domain_experts, weights, top_k)


def load_balance(probs: torch.Tensor, top_k: int) -> torch.Tensor:
    """The load-balancing loss N * sum_i f_i P_i, where f_i is the share of inputs the gate
    dispatches to expert i (counted in each input's top-k, so the shares sum to k) and
    P_i expert i's mean probability: Switch Transformer's term for top-1, Mixtral's
    (transformers' `load_balancing_loss_func`) for top-k. At perfect balance it is k;
    a dense gate (k >= N) dispatches everything everywhere and the term is constant.

    probs (B, N) -> a scalar."""
    n = probs.shape[-1]
    k = min(max(int(top_k), 1), n)
    chosen = probs.topk(k, dim=-1).indices  # (B, k)
    dispatched = torch.nn.functional.one_hot(chosen, n).sum(1).float().mean(0)  # (N,)
    return n * (dispatched * probs.mean(0)).sum()


def routing_losses(
    gate_out: GateOutput,
    task: torch.Tensor,  # the kind's task term: the mixture's negative log-likelihood
    domain_experts: torch.Tensor,  # (B, N) True where the expert serves the example's domain
    weights: LossWeights,
    top_k: int = 1,  # experts the gate dispatches each input to (its inference top-k)
) -> dict[str, torch.Tensor]:
    """The task term and every routing term, by name, and their weighted total."""
    probs = gate_out.probs  # (B, N)
    n = probs.shape[-1]
    routing = -((probs * domain_experts).sum(-1) + EPS).log().mean()
    balance = load_balance(probs, top_k)
    mean_probs = probs.mean(0)  # (N,)
    entropy_example = entropy(probs).mean() / math.log(max(n, 2))
    entropy_batch = entropy(mean_probs) / math.log(max(n, 2))
    z = torch.logsumexp(gate_out.logits, dim=-1).pow(2).mean()
    total = (
        task
        + weights.routing * routing
        + weights.balance * balance
        + weights.entropy_example * entropy_example
        - weights.entropy_batch * entropy_batch
        + weights.z * z
    )
    return {
        "total": total,
        "task": task,
        "routing": routing,
        "balance": balance,
        "entropy_example": entropy_example,
        "entropy_batch": entropy_batch,
        "z": z,
    }
