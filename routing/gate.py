"""The gate (router): a small MLP over the base model's pooled embedding and, for a
mixture whose gate reads its experts, a few signals per expert (`side_dim` inputs)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .config import GateConfig


class GateOutput(NamedTuple):
    logits: torch.Tensor  # (B, N) before temperature
    probs: torch.Tensor  # (B, N) full softmax(logits / T)
    weights: torch.Tensor  # (B, N) top-k renormalised; zero for unselected experts


def top_k_weights(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Keep each row's k largest probabilities and renormalise them to sum to 1."""
    n = probs.shape[-1]
    if k <= 0 or k >= n:
        return probs
    top = probs.topk(k, dim=-1)  # (B, k)
    kept = torch.zeros_like(probs).scatter(-1, top.indices, top.values)  # (B, N)
    return kept / kept.sum(-1, keepdim=True)


class Gate(nn.Module):
    """Reads (B, in_dim + side_dim) inputs: `in_dim` features, then `side_dim` side signals
    (each expert's confidence, for a gate that reads its experts), layer-normalised together.

    Normalising the signals with the features scales them up to the features' spread,
    which the multi-domain benchmark measured as better than reading them as they are
    (docs/results.md); the price is that a new expert's signals shift the normalisation a
    little, so a widened gate routes nearly, not exactly, as before."""

    def __init__(
        self, in_dim: int, n_experts: int, config: GateConfig | None = None, side_dim: int = 0
    ):
        super().__init__()
        self.config = config or GateConfig()
        self.in_dim = in_dim
        self.side_dim = side_dim
        self.n_experts = n_experts
        width = in_dim + side_dim
        self.norm = nn.LayerNorm(width)
        hidden = self.config.hidden
        self.hidden = nn.Linear(width, hidden) if hidden else None
        self.out = nn.Linear(hidden or width, n_experts)

    def represent(self, inputs: torch.Tensor) -> torch.Tensor:
        """The representation the output layer reads, (B, H)."""
        h = self.norm(inputs)  # (B, D + S)
        if self.hidden is not None:
            h = torch.nn.functional.gelu(self.hidden(h))  # (B, H)
        return h

    def forward(self, features: torch.Tensor, top_k: int | None = None) -> GateOutput:
        """Route a batch. In training mode, noise and `train_top_k` apply."""
        logits = self.out(self.represent(features))  # (B, N)
        noisy = logits
        if self.training and self.config.noise_std > 0:
            noisy = logits + torch.randn_like(logits) * self.config.noise_std
        probs = torch.softmax(noisy / self.config.temperature, dim=-1)  # (B, N)
        if top_k is None:
            top_k = self.config.train_top_k if self.training else self.config.top_k
        return GateOutput(logits, probs, top_k_weights(probs, top_k))

    @torch.no_grad()
    def expanded(self, new_rows: torch.Tensor, new_biases: torch.Tensor) -> Gate:
        """A gate with extra experts: old parameters copied, new output rows given.

        `new_rows` is (n_new, H) and `new_biases` (n_new,).
        """
        gate = Gate(self.in_dim, self.n_experts + new_rows.shape[0], self.config, self.side_dim)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("out.")}
        gate.load_state_dict(state, strict=False)
        gate.out.weight[: self.n_experts] = self.out.weight
        gate.out.bias[: self.n_experts] = self.out.bias
        gate.out.weight[self.n_experts :] = new_rows
        gate.out.bias[self.n_experts :] = new_biases
        return gate

    @torch.no_grad()
    def widened(self, side_dim: int) -> Gate:
        """The same gate reading `side_dim` side signals, the new ones (appended) with zero
        weight after the normalisation: only the normalisation's statistics see them."""
        if side_dim < self.side_dim:
            raise ValueError(f"a gate reading {self.side_dim} side signals cannot read fewer")
        gate = Gate(self.in_dim, self.n_experts, self.config, side_dim)
        old = self.in_dim + self.side_dim
        first = "hidden" if gate.hidden is not None else "out"
        state = self.state_dict()
        grown = ("norm.weight", "norm.bias", f"{first}.weight")
        gate.load_state_dict({k: v for k, v in state.items() if k not in grown}, strict=False)
        gate.norm.weight[:old] = state["norm.weight"]
        gate.norm.bias[:old] = state["norm.bias"]
        layer = getattr(gate, first)
        layer.weight.zero_()
        layer.weight[:, :old] = state[f"{first}.weight"]
        return gate
