"""Coordinated training (FlexOlmo's step): a contributor's expert learns inside a two-expert
per-token mixture with the frozen shared expert (the base with the mixture's anchor
merged), so it learns what the shared expert lacks rather than all of its domain again.

The shared expert's router row is the mixture's (the anchor's public texts, when the anchor
carries their statistics; else the contributor's own texts, so that every token begins
half to each); the expert's row starts from its own texts. The expert's LoRA on the MLP and
its own router row train; the shared row and every base weight stay frozen. Every token
goes to both experts (top-2 of 2), weighted by the router. What is kept is the expert's
LoRA, a plain LoRA on the MLP of the anchored base: it composes sequence by sequence or
token by token like any other.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm

from ...gate_training import shuffled_batches
from .token_moe import PROJECTIONS, ExpertDeltas, install
from .token_routing import domain_row, shared_row

DEFAULT_TEMPERATURE = 0.005  # LMRouting.token_temperature's default


def train_coordinated(base, texts: list[str], *, r: int = 8, alpha: float = 16.0,
                      target_modules: tuple[str, ...] = PROJECTIONS, epochs: int = 1,
                      batch_size: int = 4, lr: float = 1e-3, seed: int = 0,
                      temperature: float = DEFAULT_TEMPERATURE,
                      progress: bool = False) -> dict[str, torch.Tensor]:  # fmt: skip
    """Train a LoRA expert on `texts` beside the frozen shared expert; returns its
    canonical tensors (`model.layers.0.mlp.up_proj.lora_A.weight`), as `train_lm_lora`."""
    unknown = sorted(set(target_modules) - set(PROJECTIONS))
    if unknown:
        raise ValueError(f"coordinated experts are LoRA on the MLP; not on {unknown}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    device = base.device
    model = base.fresh_model().to(device).requires_grad_(False)
    own = texts[: 4 * batch_size]
    start = domain_row(base, own, temperature=temperature)  # (L, D)
    shared = shared_row(base, own, temperature=temperature)  # (L, D)
    routers = torch.stack([shared, start], 1)  # (L, 2, D): [shared, expert]
    lora: dict[str, nn.Parameter] = {}
    trainee: dict[int, ExpertDeltas] = {}
    for i, layer in enumerate(model.model.layers):
        pairs = {}
        for projection in target_modules:
            linear = getattr(layer.mlp, projection)
            a = nn.Parameter(torch.empty(r, linear.in_features, device=device))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # PEFT's LoRA initialisation
            b = nn.Parameter(torch.zeros(linear.out_features, r, device=device))
            pairs[projection] = (a, b)
            lora[f"model.layers.{i}.mlp.{projection}.lora_A.weight"] = a
            lora[f"model.layers.{i}.mlp.{projection}.lora_B.weight"] = b
        trainee[i] = ExpertDeltas(pairs=pairs, scale=alpha / r)
    layers = install(model, routers.to(device), [{}, trainee], top_k=2)
    frozen_row = torch.tensor([0.0, 1.0], device=device)[:, None]  # the shared row stays
    for layer in layers:
        layer.router.requires_grad_(True)
        layer.router.register_hook(lambda grad: grad * frozen_row)
    params = [*lora.values(), *(layer.router for layer in layers)]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = max(1, epochs * math.ceil(len(texts) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    bar = tqdm(total=steps, desc="training a coordinated expert", unit="step",
               disable=not progress)  # fmt: skip
    model.train()
    for _ in range(epochs):
        for idx in shuffled_batches(len(texts), batch_size, g):
            batch = base.tokenize([texts[i] for i in idx])
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            loss = model(**batch, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return {k: v.detach().cpu().clone() for k, v in lora.items()}
