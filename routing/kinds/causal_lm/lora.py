"""LoRA experts inside one frozen causal LM: every adapted linear layer holds each
expert's pair, and a mixing table says, row by row, how much of each expert applies.

    out = W x + sum over experts k of m[b, k] * (alpha_k / r_k) * B_k A_k x

With one-hot rows this is the adapted model of each expert (what PEFT computes for
that adapter), for a batch whose rows go to different experts in one pass: each
expert's LoRA branch runs only on its rows. With gate weights it is the gate-weighted
merge of the LoRA deltas (one pass for the whole mixture). The table stays fixed for
a batch's whole generation, so the KV cache of `generate` is used as it is.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Mixing:
    names: list[str]  # the experts the table's columns are
    weights: torch.Tensor  # (B, K): each row's weight on each expert
    # per expert, the rows with a weight (None: all of them): an expert's LoRA branch
    # runs only on the rows routed to it, so one batch serves every expert's group
    rows: list[torch.Tensor | None]

    @classmethod
    def of(cls, names: list[str], weights: torch.Tensor) -> Mixing:
        rows = []
        for k in range(weights.shape[1]):
            routed = weights[:, k].nonzero().squeeze(1)
            rows.append(None if routed.numel() == weights.shape[0] else routed)
        return cls(list(names), weights, rows)


class LoRALinear(nn.Module):
    """A frozen linear layer with every expert's LoRA pair beside it."""

    def __init__(self, base: nn.Linear, bank: LoraBank):
        super().__init__()
        self.base = base
        self.bank = bank  # not a submodule: shared by every layer
        self.pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}

    @property
    def weight(self) -> torch.Tensor:  # what code that inspects the layer expects
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # (B, T, out)
        mixing = self.bank.__dict__.get("mixing")
        if mixing is None:
            return out
        for k, name in enumerate(mixing.names):
            pair = self.pairs.get(name)
            if pair is None:
                continue
            a, b, scale = pair
            rows = mixing.rows[k]  # the rows this expert applies to
            if rows is None:  # every row
                w = (mixing.weights[:, k] * scale).to(out.dtype)  # (B,)
                out = out + w.view(-1, *([1] * (x.dim() - 1))) * ((x @ a.T) @ b.T)
            elif rows.numel():
                w = (mixing.weights[rows, k] * scale).to(out.dtype)  # (b,)
                delta = (x[rows] @ a.T) @ b.T  # (b, T, out)
                out = out.index_add(0, rows, w.view(-1, *([1] * (x.dim() - 1))) * delta)
        return out


class LoraBank:
    """The LoRA pairs of every expert loaded into a base model, and the mixing table."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers: dict[str, LoRALinear] = {}  # module path -> layer
        self.experts: dict[str, float] = {}  # expert name -> scale
        self.mixing: Mixing | None = None

    def _layer(self, path: str) -> LoRALinear:
        if path not in self.layers:
            parent_path, _, attr = path.rpartition(".")
            parent = self.model.get_submodule(parent_path)
            base = getattr(parent, attr)
            if not isinstance(base, nn.Linear):
                raise ValueError(f"{path} is not a linear layer of the base model")
            layer = LoRALinear(base, self)
            setattr(parent, attr, layer)
            self.layers[path] = layer
        return self.layers[path]

    def add(self, name: str, tensors: dict[str, torch.Tensor], scale: float) -> None:
        """Load an expert: `tensors` maps "<module path>.lora_A.weight" / "lora_B" to matrices."""
        if name in self.experts:
            return
        device = next(self.model.parameters()).device
        paths = sorted({key.rsplit(".lora_", 1)[0] for key in tensors})
        for path in paths:
            a = tensors[f"{path}.lora_A.weight"].float().to(device)  # (r, in)
            b = tensors[f"{path}.lora_B.weight"].float().to(device)  # (out, r)
            self._layer(path).pairs[name] = (a, b, scale)
        self.experts[name] = scale

    def remove(self, name: str) -> None:
        for layer in self.layers.values():
            layer.pairs.pop(name, None)
        self.experts.pop(name, None)

    @contextmanager
    def mixed(self, names: list[str], weights: torch.Tensor):
        """Run the model with each row's experts weighted by `weights` (B, K)."""
        previous = self.mixing
        device = next(self.model.parameters()).device
        self.mixing = Mixing.of(names, weights.to(device))
        try:
            yield
        finally:
            self.mixing = previous

    @contextmanager
    def only(self, name: str | None, rows: int):
        """Run `rows` rows with one expert's adapter (None: the base model alone)."""
        if name is None:
            with self.off():
                yield
            return
        with self.mixed([name], torch.ones(rows, 1)):
            yield

    @contextmanager
    def off(self):
        previous, self.mixing = self.mixing, None
        try:
            yield
        finally:
            self.mixing = previous
