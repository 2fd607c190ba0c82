"""Per-token routing among feed-forward experts, computed exactly as a Mixtral layer does.

In every decoder layer the MLP becomes a mixture: a linear router scores each token
against one row per expert, keeps the top-k, renormalises their probabilities and sums
the selected experts' MLP outputs with those weights (transformers'
`MixtralSparseMoeBlock`: softmax in float32, top-k, divided by the top-k's sum). Expert
e's MLP is the base MLP (with the mixture's anchor merged into it) plus expert e's LoRA
deltas on `gate_proj`, `up_proj`, `down_proj`; the shared expert (the anchor alone, as
FlexOlmo's public expert) has none. Attention is the base's, shared by all.

The deltas stay factored, so the big products are shared where they can be:
    gate_e(x) = W_g x + s_e B_g,e A_g,e x        (W_g x computed once for every expert)
    y_e = W_d z_e + s_e B_d,e A_d,e z_e,  z_e = act(gate_e(x)) * up_e(x)
which equals the merged weights W + s_e B A of a standard MoE checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


@dataclass
class ExpertDeltas:
    """One expert's LoRA pairs in one layer: projection -> (A (r, in), B (out, r)), and its
    scale alpha / r. The shared expert has none."""

    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    scale: float = 1.0

    def delta(self, projection: str, x: torch.Tensor) -> torch.Tensor | None:
        pair = self.pairs.get(projection)
        if pair is None:
            return None
        a, b = pair
        return self.scale * ((x @ a.T) @ b.T)  # (n, out)


class TokenMoEMLP(nn.Module):
    """A decoder layer's MLP as a per-token mixture of experts (a Mixtral sparse MoE block).

    `router` (E, D) holds one row per expert; `experts` one `ExpertDeltas` per row. The
    router logits of the last forward stay on `last_logits` (N, E) for the load-balancing
    term and the routing statistics."""

    def __init__(self, mlp: nn.Module, router: torch.Tensor, experts: list[ExpertDeltas],
                 top_k: int):  # fmt: skip
        super().__init__()
        if router.shape[0] != len(experts):
            raise ValueError(f"{router.shape[0]} router rows for {len(experts)} experts")
        self.mlp = mlp  # the base MLP (anchor merged): gate_proj, up_proj, down_proj, act_fn
        self.router = nn.Parameter(router.clone(), requires_grad=False)  # (E, D)
        self.experts = experts
        self.top_k = min(top_k, len(experts))
        self.last_logits: torch.Tensor | None = None
        self.left_out: set[int] = set()  # experts no token may go to (measuring credit)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (N, E), top-k weights (N, k), top-k experts (N, k)) of tokens x (N, D)."""
        logits = nn.functional.linear(x, self.router)  # (N, E)
        if self.left_out:
            logits = logits.index_fill(-1, torch.tensor(sorted(self.left_out)), -torch.inf)
        probs = torch.softmax(logits.float(), dim=-1)  # (N, E)
        k = min(self.top_k, len(self.experts) - len(self.left_out))
        weights, chosen = probs.topk(k, dim=-1)  # (N, k)
        weights = weights / weights.sum(-1, keepdim=True)
        return logits, weights.to(x.dtype), chosen

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        shape = hidden.shape  # (B, T, D)
        x = hidden.reshape(-1, shape[-1])  # (N, D)
        logits, weights, chosen = self.route(x)
        self.last_logits = logits
        gate = self.mlp.gate_proj(x)  # (N, I): shared by every expert
        up = self.mlp.up_proj(x)  # (N, I)
        out = torch.zeros_like(x)  # (N, D)
        for e in chosen.unique().tolist():
            tokens, slot = torch.where(chosen == e)  # the tokens routed to e, and in which slot
            expert = self.experts[e]
            xs = x[tokens]  # (n, D)
            g, u = gate[tokens], up[tokens]  # (n, I)
            if (d := expert.delta("gate_proj", xs)) is not None:
                g = g + d
            if (d := expert.delta("up_proj", xs)) is not None:
                u = u + d
            z = self.mlp.act_fn(g) * u  # (n, I)
            y = self.mlp.down_proj(z)  # (n, D)
            if (d := expert.delta("down_proj", z)) is not None:
                y = y + d
            out.index_add_(0, tokens, y * weights[tokens, slot, None])
        return out.reshape(shape)


def install(model: nn.Module, routers: torch.Tensor, experts: list[dict[int, ExpertDeltas]],
            top_k: int) -> list[TokenMoEMLP]:  # fmt: skip
    """Replace every decoder layer's MLP of `model` (a Llama-family causal LM) by a
    per-token mixture: `routers` (L, E, D), `experts[e][layer]` the deltas of expert e in
    that layer (an expert without deltas in a layer is the shared MLP there)."""
    layers = model.model.layers
    if routers.shape[0] != len(layers):
        raise ValueError(f"router rows for {routers.shape[0]} layers, the model has {len(layers)}")
    installed = []
    for i, layer in enumerate(layers):
        mlp = layer.mlp.mlp if isinstance(layer.mlp, TokenMoEMLP) else layer.mlp
        deltas = [e.get(i, ExpertDeltas()) for e in experts]
        layer.mlp = TokenMoEMLP(mlp, routers[i], deltas, top_k)
        installed.append(layer.mlp)
    return installed


def deltas_of(lora_tensors: dict[str, torch.Tensor], scale: float, device=None):
    """An expert's canonical LoRA tensors (`model.layers.3.mlp.up_proj.lora_A.weight`) as its
    deltas per layer; a ValueError names a module outside the MLP (attention is shared)."""
    per_layer: dict[int, ExpertDeltas] = {}
    for key in sorted(lora_tensors):
        module, _, ab = key.rpartition(".lora_")
        parts = module.split(".")
        if (
            len(parts) != 5
            or parts[:2] != ["model", "layers"]
            or parts[3] != "mlp"
            or (parts[4] not in PROJECTIONS)
        ):
            raise ValueError(module)
        layer, projection = int(parts[2]), parts[4]
        slot = per_layer.setdefault(layer, ExpertDeltas(scale=scale))
        a_or_b = lora_tensors[key].float().to(device)
        a, b = slot.pairs.get(projection, (None, None))
        slot.pairs[projection] = (a_or_b, b) if ab.startswith("A") else (a, a_or_b)
    return per_layer


def balance_loss(layers: list[TokenMoEMLP], mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mixtral's load-balancing term over every layer's last routing (N * sum f_i P_i with
    f_i counted over each token's top-k; `routing.losses.load_balance`), on the tokens that
    `mask` (B, T) keeps."""
    from ...losses import load_balance

    terms = []
    for layer in layers:
        logits = layer.last_logits  # (N, E)
        if mask is not None:
            logits = logits[mask.reshape(-1).bool()]
        terms.append(load_balance(torch.softmax(logits.float(), -1), layer.top_k))
    return torch.stack(terms).mean()
