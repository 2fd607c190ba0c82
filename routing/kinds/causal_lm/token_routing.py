"""The router rows of a per-token composition: each expert's row in every layer starts as
the mean hidden state of its domain's router texts at that layer's MLP input, computed on
the base with the anchor merged (FlexOlmo starts each owner's router row from its mean
document embedding). No training is needed to add an expert, and a new expert's row leaves
every other row as it was: each row depends on its own domain's texts only.

The softmax over a token's dot products with the rows ignores what all rows share, so
only the differences between domains route. A row is divided by temperature times the
mean squared norm of its own texts' hidden states at that layer, which makes the dot
products comparable across layers; the temperature is the mixture's setting
(`LMRouting.token_temperature`). The shared expert's row comes the same way from its own
reference texts (the anchor's public text, or the domains' router texts when the first
per-token composition is made), and is kept from composition to composition.
"""

from __future__ import annotations

import torch

from ...cache import TensorCache, texts_hash


@torch.inference_mode()
def mlp_input_stats(base, texts: list[str], *, batch_size: int = 8, model=None) -> torch.Tensor:
    """(2, L, D) over every token of `texts` at each decoder layer's MLP input, on the base
    alone (anchor merged, no expert) or on `model`: [0] the mean hidden state, [1, :, 0] the
    mean squared norm (the rest of [1] is zero)."""
    layers = (model or base.model).model.layers
    n_layers, dim = len(layers), base.hidden_size
    sums = torch.zeros(n_layers, dim, dtype=torch.float64)
    norms = torch.zeros(n_layers, dtype=torch.float64)
    count = 0
    mask_now: list[torch.Tensor] = []

    def hook(i):
        def record(module, args):
            x = args[0]  # (B, T, D)
            keep = mask_now[0].bool()  # (B, T)
            kept = x[keep].double()  # (n, D)
            sums[i] += kept.sum(0).cpu()
            norms[i] += kept.pow(2).sum(-1).sum().cpu()

        return record

    handles = [layer.mlp.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        for start in range(0, len(texts), batch_size):
            batch = base.tokenize(texts[start : start + batch_size])
            mask_now[:] = [batch["attention_mask"]]
            count += int(batch["attention_mask"].sum())
            with base.bank.off():
                (model or base.model).model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    out = torch.zeros(2, n_layers, dim)
    out[0] = (sums / max(count, 1)).float()
    out[1, :, 0] = (norms / max(count, 1)).float()
    return out


def cached_stats(base, texts: list[str], cache: TensorCache | None) -> torch.Tensor:
    if cache is None:
        return mlp_input_stats(base, texts)
    return cache.get_or_compute(
        "token-rows", (base.fingerprint, texts_hash(texts)), lambda: mlp_input_stats(base, texts)
    )


def domain_row(base, texts: list[str], *, temperature: float,
               cache: TensorCache | None = None) -> torch.Tensor:  # fmt: skip
    """One expert's router rows (L, D): the mean MLP input of `texts` at each layer, divided
    by temperature times their mean squared norm there."""
    return row_of(cached_stats(base, texts, cache), temperature)


def row_of(stats: torch.Tensor, temperature: float) -> torch.Tensor:
    """Router rows (L, D) from statistics (2, L, D) (`mlp_input_stats`)."""
    return stats[0] / (temperature * stats[1, :, 0].clamp(min=1e-6))[:, None]


def shared_row(base, texts: list[str], *, temperature: float, cache=None) -> torch.Tensor:
    """The shared expert's rows: from the anchor's own statistics (its public texts) when it
    carries them, else from `texts`."""
    anchor = getattr(base, "anchor", None)
    if anchor is not None and anchor.router_stats is not None:
        return row_of(anchor.router_stats, temperature)
    return domain_row(base, texts, temperature=temperature, cache=cache)
