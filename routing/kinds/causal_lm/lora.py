"""LoRA experts inside one frozen causal LM: every adapted linear layer holds every
expert's pair, stacked, and a mixing table says, row by row, how much of each applies.

    out = W x + sum over experts k of m[b, k] * (alpha_k / r_k) * B_k A_k x

With one-hot rows this is the adapted model of each expert (what PEFT computes for
that adapter), for a batch whose rows go to different experts: each row gathers its
own expert's pair, two batched products a layer whatever the number of experts. With
gate weights it is the gate-weighted merge of the selected experts' LoRA deltas, one
pass for the whole mixture. The table stays fixed for a batch's whole generation, so
the KV cache of `generate` is used as it is.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Mixing:
    """How each row of a batch uses the bank's experts (columns in the bank's order)."""

    weights: torch.Tensor  # (B, K) each row's weight on each expert of the bank
    top1: torch.Tensor | None  # (B,) each row's one expert (-1: none), when no row has two
    columns: torch.Tensor  # the experts some row uses

    @classmethod
    def of(cls, weights: torch.Tensor) -> Mixing:
        used = (weights != 0).sum(-1)  # (B,)
        top1 = None
        if int(used.max()) <= 1:
            top1 = torch.where(used > 0, weights.abs().argmax(-1), torch.full_like(used, -1))
        return cls(weights, top1, (weights != 0).any(0).nonzero().squeeze(1))


class LoRALinear(nn.Module):
    """A frozen linear layer with the bank's experts' LoRA pairs beside it, stacked:
    A (K, r, in) and B (K, out, r), zero for an expert that does not adapt this layer
    (and zero-padded to the largest rank, which changes nothing)."""

    def __init__(self, base: nn.Linear, bank: LoraBank):
        super().__init__()
        self.base = base
        self.bank = bank  # not a submodule: shared by every layer
        self.a = base.weight.new_zeros(0, 0, base.in_features)  # (K, r, in)
        self.b = base.weight.new_zeros(0, base.out_features, 0)  # (K, out, r)

    @property
    def weight(self) -> torch.Tensor:  # what code that inspects the layer expects
        return self.base.weight

    def grow(self, experts: int, rank: int) -> None:
        """Make room for `experts` experts of rank up to `rank` (new rows are zero)."""
        k, r = self.a.shape[0], self.a.shape[1]
        if experts == k and rank <= r:
            return
        rank = max(rank, r)
        a = self.a.new_zeros(experts, rank, self.base.in_features)
        b = self.b.new_zeros(experts, self.base.out_features, rank)
        a[:k, :r], b[:k, :, :r] = self.a, self.b
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)  # (B, T, out)
        mixing = self.bank.mixing
        if mixing is None or self.a.shape[0] == 0:
            return out
        scale = self.bank.scales  # (K,)
        if mixing.top1 is not None:
            idx = mixing.top1.clamp(min=0)  # (B,)
            w = mixing.weights.gather(1, idx[:, None]).squeeze(1) * scale[idx]  # (B,)
            h = torch.bmm(x, self.a[idx].transpose(1, 2))  # (B, T, r)
            delta = torch.bmm(h, self.b[idx].transpose(1, 2))  # (B, T, out)
            return out + w.to(out.dtype)[:, None, None] * delta
        cols = mixing.columns
        w = mixing.weights[:, cols] * scale[cols]  # (B, k)
        h = torch.einsum("bti,kri->btkr", x, self.a[cols])  # (B, T, k, r)
        delta = torch.einsum("btkr,kor,bk->bto", h, self.b[cols], w.to(x.dtype))  # (B, T, out)
        return out + delta


class LoraBank:
    """Every expert loaded into a base model, and the mixing table the next pass uses."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.layers: dict[str, LoRALinear] = {}  # module path -> layer
        self.names: list[str] = []  # experts, in the stacks' order
        self.scales = torch.zeros(0)  # (K,) alpha / r of each expert
        self.mixing: Mixing | None = None

    @property
    def experts(self) -> dict[str, float]:
        return dict(zip(self.names, self.scales.tolist(), strict=True))

    def _layer(self, path: str) -> LoRALinear:
        if path not in self.layers:
            parent_path, _, attr = path.rpartition(".")
            parent = self.model.get_submodule(parent_path)
            base = getattr(parent, attr)
            if not isinstance(base, nn.Linear):
                raise ValueError(f"{path} is not a linear layer of the base model")
            layer = LoRALinear(base, self)
            layer.grow(len(self.names), 1)
            setattr(parent, attr, layer)
            self.layers[path] = layer
        return self.layers[path]

    def add(self, name: str, tensors: dict[str, torch.Tensor], scale: float) -> None:
        """Load an expert: `tensors` maps "<module path>.lora_A.weight" / "lora_B" to matrices."""
        if name in self.names:
            return
        device = next(self.model.parameters()).device
        paths = sorted({key.rsplit(".lora_", 1)[0] for key in tensors})
        k = len(self.names)
        for path in paths:
            self._layer(path)
        for layer in self.layers.values():
            layer.grow(k + 1, 1)
        for path in paths:
            a = tensors[f"{path}.lora_A.weight"].float().to(device)  # (r, in)
            b = tensors[f"{path}.lora_B.weight"].float().to(device)  # (out, r)
            layer = self.layers[path]
            layer.grow(k + 1, a.shape[0])
            layer.a[k, : a.shape[0]] = a
            layer.b[k, :, : a.shape[0]] = b
        self.names.append(name)
        self.scales = torch.cat([self.scales.to(device), torch.tensor([scale], device=device)])

    def table(self, names: list[str], weights: torch.Tensor) -> torch.Tensor:
        """A mixing table over `names` (B, len(names)) as one over the whole bank (B, K)."""
        device = self.scales.device
        full = torch.zeros(weights.shape[0], len(self.names), device=device)
        full[:, [self.names.index(n) for n in names]] = weights.to(device).float()
        return full

    @contextmanager
    def mixed(self, names: list[str], weights: torch.Tensor):
        """Run the model with each row's experts weighted by `weights` (B, len(names))."""
        previous = self.mixing
        self.mixing = Mixing.of(self.table(names, weights))
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
