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
    """Reads (B, in_dim + side_dim) inputs: `in_dim` features, layer-normalised, then
    `side_dim` side signals read as they are (each expert's confidence, already in [0, 1]),
    so that signals added for a new expert leave the old ones' normalisation alone."""

    def __init__(
        self, in_dim: int, n_experts: int, config: GateConfig | None = None, side_dim: int = 0
    ):
        super().__init__()
        self.config = config or GateConfig()
        self.in_dim = in_dim
        self.side_dim = side_dim
        self.n_experts = n_experts
        self.norm = nn.LayerNorm(in_dim)
        hidden = self.config.hidden
        width = in_dim + side_dim
        self.hidden = nn.Linear(width, hidden) if hidden else None
        self.out = nn.Linear(hidden or width, n_experts)

    def represent(self, inputs: torch.Tensor) -> torch.Tensor:
        """The representation the output layer reads, (B, H)."""
        h = self.norm(inputs[:, : self.in_dim])  # (B, D)
        if self.side_dim:
            h = torch.cat([h, inputs[:, self.in_dim :]], dim=-1)  # (B, D + S)
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
        weight: its outputs on the old inputs do not change."""
        if side_dim < self.side_dim:
            raise ValueError(f"a gate reading {self.side_dim} side signals cannot read fewer")
        gate = Gate(self.in_dim, self.n_experts, self.config, side_dim)
        first = gate.hidden if gate.hidden is not None else gate.out
        state = self.state_dict()
        weight_key = "hidden.weight" if gate.hidden is not None else "out.weight"
        gate.load_state_dict({k: v for k, v in state.items() if k != weight_key}, strict=False)
        first.weight.zero_()
        first.weight[:, : self.in_dim + self.side_dim] = state[weight_key]
        return gate
