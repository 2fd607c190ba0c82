"""Counted inference FLOPs (multiply-adds x 2) of a decoder-only language model and of the
pieces a mixture adds: LoRA branches, the router's prefix pass and its gate.

Counts the matrix products that dominate: the decoder layers' linear layers, attention
over the context, and the output head; embeddings, norms and softmaxes are left out.
"""

from __future__ import annotations

from ...basemodels import BaseSpec
from .layout import module_dims

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def layer_flops(spec: BaseSpec, context: float) -> float:
    """One decoder layer, one token attending to `context` earlier tokens."""
    linear = sum(2 * i * o for i, o in (module_dims(m, spec) for m in LINEAR))
    attention = 2 * 2 * context * (spec.q_size or spec.hidden_size)  # scores and weighted sum
    return float(linear + attention)


def token_flops(spec: BaseSpec, vocab: int, tokens: int) -> float:
    """Per token of a `tokens`-long sequence: every layer (average context tokens / 2) and
    the output head."""
    return spec.num_layers * layer_flops(spec, tokens / 2) + 2.0 * spec.hidden_size * vocab


def lora_flops(spec: BaseSpec, r: int, modules: list[str]) -> float:
    """Per token: the LoRA branches x A^T B^T of the adapted modules (canonical names)."""
    return float(sum(2 * r * sum(module_dims(m, spec)) for m in modules))


def router_flops(spec: BaseSpec, prefix: int, tokens: int, gate_hidden: int, experts: int):
    """Per token of a `tokens`-long sequence: the prefix pass (no output head) and the gate,
    once per sequence."""
    prefix_pass = prefix * spec.num_layers * layer_flops(spec, prefix / 2)
    d = spec.hidden_size
    gate = 2 * (d * gate_hidden + gate_hidden * experts) if gate_hidden else 2 * d * experts
    return (prefix_pass + gate) / tokens
