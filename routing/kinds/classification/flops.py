"""Counted inference FLOPs (multiply-adds x 2) of the pieces of a composition.

Counts the matrix products that dominate a BERT-style encoder; embeddings,
layer norms, softmaxes and biases are left out (under 1 % at these sizes).
`tokens` is the number of tokens of one example after truncation.
"""

from __future__ import annotations

from ...basemodels import BaseSpec

# in/out features of the adaptable modules of one encoder layer
_QKV_OUT = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
)


def encoder_flops(spec: BaseSpec, tokens: int) -> float:
    """One forward pass of the encoder over `tokens` tokens."""
    d, i, t = spec.hidden_size, spec.intermediate_size, tokens
    projections = 2 * t * (4 * d * d + 2 * d * i)  # Q, K, V, output; the two FFN matrices
    attention = 2 * 2 * t * t * d  # scores and the weighted sum
    return float(spec.num_layers * (projections + attention))


def lora_extra_flops(spec: BaseSpec, r: int, modules: list[str], tokens: int) -> float:
    """The LoRA branches (x A^T B^T) added to an encoder pass, for canonical module names."""
    d, i = spec.hidden_size, spec.intermediate_size
    total = 0
    for name in modules:
        module = name.split(".", 3)[3] if name.startswith("encoder.layer.") else name
        fan_in, fan_out = {"intermediate.dense": (d, i), "output.dense": (i, d)}.get(module, (d, d))
        total += 2 * tokens * r * (fan_in + fan_out)
    return float(total)


def mlp_flops(sizes: list[int]) -> float:
    """A stack of linear layers with the given widths, e.g. [D, H, L]."""
    return float(sum(2 * a * b for a, b in zip(sizes, sizes[1:], strict=False)))
