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
which equals the merged weights W + s_e B A of a standard MoE checkpoint; and since the
down projection is linear, sum_e w_e W_d z_e = W_d (sum_e w_e z_e): it runs once a token
however many experts the token goes to (top-2 costs the base's three projections plus the
LoRA deltas, not a second down projection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
# At most this many (token, expert) pairs in a forward (generating a few sequences) and the
# chosen experts' deltas are gathered per token instead of looped over expert by expert.
GATHER_TOKENS = 64


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
        self._stack: dict | None = None  # see _stacked
        self._stack_key: tuple = ()

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
        if chosen.numel() <= GATHER_TOKENS and not torch.is_grad_enabled():  # generating
            return self._gathered(x, gate, up, weights, chosen).reshape(shape)
        mixed = torch.zeros_like(gate)  # (N, I): sum_e w_e z_e, down-projected once
        out = torch.zeros_like(x)  # (N, D): the experts' own down deltas
        for e in chosen.unique().tolist():
            tokens, slot = torch.where(chosen == e)  # the tokens routed to e, and in which slot
            expert = self.experts[e]
            w = weights[tokens, slot, None]  # (n, 1)
            xs = x[tokens]  # (n, D)
            g, u = gate[tokens], up[tokens]  # (n, I)
            if (d := expert.delta("gate_proj", xs)) is not None:
                g = g + d
            if (d := expert.delta("up_proj", xs)) is not None:
                u = u + d
            z = self.mlp.act_fn(g) * u  # (n, I)
            mixed.index_add_(0, tokens, z * w)
            if (d := expert.delta("down_proj", z)) is not None:
                out.index_add_(0, tokens, d * w)
        return (out + self.mlp.down_proj(mixed)).reshape(shape)

    def _stacked(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Every expert's pairs of each projection stacked, scale folded into B and ranks
        padded with zeros (an expert without a pair adds nothing): A (E, r, in), B (E, out,
        r). Built again only when a pair changed (training changes them in place)."""
        key = tuple((id(t), t._version) for e in self.experts for p in e.pairs.values() for t in p)
        if self._stack is None or self._stack_key != key:
            self._stack, self._stack_key = {}, key
            for projection in PROJECTIONS:
                pairs = [e.pairs.get(projection) for e in self.experts]
                known = [p for p in pairs if p is not None]
                if not known:
                    continue
                rank = max(a.shape[0] for a, _ in known)
                a0, b0 = known[0]
                a_all = a0.new_zeros(len(pairs), rank, a0.shape[1])
                b_all = b0.new_zeros(len(pairs), b0.shape[0], rank)
                for i, (expert, pair) in enumerate(zip(self.experts, pairs, strict=True)):
                    if pair is not None:
                        a_all[i, : pair[0].shape[0]] = pair[0]
                        b_all[i, :, : pair[1].shape[1]] = expert.scale * pair[1]
                self._stack[projection] = (a_all, b_all)
        return self._stack

    def _delta(self, projection: str, x: torch.Tensor, chosen: torch.Tensor):
        """Each token's chosen experts' deltas at once: x (N, in) or (N, k, in) -> (N, k,
        out), or None where no expert adapts the projection."""
        pair = self._stacked().get(projection)
        if pair is None:
            return None
        a, b = pair[0][chosen], pair[1][chosen]  # (N, k, r, in), (N, k, out, r)
        h = torch.einsum("nki,nkri->nkr", x.unsqueeze(1).expand(-1, chosen.shape[1], -1)
                         if x.dim() == 2 else x, a)  # fmt: skip
        return torch.einsum("nkr,nkor->nko", h, b)

    def _gathered(self, x, gate, up, weights, chosen) -> torch.Tensor:
        """The forward for a few tokens: the chosen experts' deltas gathered per token (the
        same sums as the loop in `forward`, in a fixed number of operations)."""
        k = chosen.shape[1]
        g = gate.unsqueeze(1).expand(-1, k, -1)  # (N, k, I)
        u = up.unsqueeze(1).expand(-1, k, -1)
        if (d := self._delta("gate_proj", x, chosen)) is not None:
            g = g + d
        if (d := self._delta("up_proj", x, chosen)) is not None:
            u = u + d
        z = self.mlp.act_fn(g) * u  # (N, k, I)
        w = weights.unsqueeze(-1)  # (N, k, 1)
        out = self.mlp.down_proj((z * w).sum(1))  # (N, D)
        if (d := self._delta("down_proj", z, chosen)) is not None:
            out = out + (d * w).sum(1)
        return out


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
