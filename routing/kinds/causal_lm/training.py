"""Training a language-model expert: a PEFT LoRA adapter of the base causal LM (with the
mixture's anchor merged, when it has one) on one domain's texts, alone or coordinated with
the shared expert (`coordinated`), written as the project's single file; and a mixture's
anchor, trained the same way on public text."""

from __future__ import annotations

import math
import time
import warnings

import torch
from tqdm.auto import tqdm

from ...cache import TensorCache
from ...gate_training import shuffled_batches
from ...splits import DomainData
from .base import CausalBase
from .composing import token_log_probs
from .experts import load_lm_expert, save_lm_expert
from .layout import MLP_PROJECTIONS
from .scoring import perplexity

# An expert is LoRA on the feed-forward projections: it composes sequence by sequence and
# token by token (a per-token mixture routes among MLPs and shares attention).
DEFAULT_TARGETS = MLP_PROJECTIONS
ROUTER_TEXTS = 64  # of an anchor's public texts, for the shared expert's router row


def train_lm_lora(
    base: CausalBase,
    texts: list[str],
    *,
    r: int = 8,
    alpha: float = 16.0,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
    epochs: int = 1,
    batch_size: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
    steps: int | None = None,
) -> dict[str, torch.Tensor]:
    """Fine-tune a LoRA adapter on `texts` (next-token loss on every token) with PEFT on a
    copy of the base that shares its frozen weights, for `epochs` passes or exactly `steps`
    batches (as many passes as that takes). Returns the canonical LoRA tensors
    (`model.layers.0.self_attn.q_proj.lora_A.weight`)."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=r,
        lora_alpha=alpha,
        target_modules=list(target_modules),
        lora_dropout=0.05,
    )
    model = get_peft_model(base.fresh_model(), config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = steps or max(1, epochs * math.ceil(len(texts) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    bar = tqdm(total=steps, desc="training lora", unit="step", disable=not progress)
    done = 0
    while done < steps:
        for idx in shuffled_batches(len(texts), batch_size, g):
            if done == steps:
                break
            batch = base.tokenize([texts[i] for i in idx])
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            loss = model(**batch, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    with warnings.catch_warnings():  # a GGUF base has no config.json for PEFT to read
        warnings.filterwarnings("ignore", message="Could not find a config file")
        state = get_peft_model_state_dict(model)
    return {k.removeprefix("base_model.model."): v.detach().cpu() for k, v in state.items()}


def train_lm_expert_file(
    base: CausalBase,
    data: DomainData,
    path,
    *,
    cache: TensorCache,
    prefix_tokens: int = 32,
    r: int = 8,
    alpha: float | None = None,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
    seed: int = 0,
    progress=False,
    evaluate: bool = True,
    coordinated: bool = False,
    role: str = "expert",
    **options,
) -> dict:
    """Train an expert (or, with role "anchor", a mixture's anchor) on a domain's training
    texts and write it as a contract file; returns a summary with (when `evaluate`) its
    held-out perplexity against the base model's. With `coordinated`, the expert trains
    beside the frozen shared expert (`coordinated.train_coordinated`); else alone."""
    alpha = 2.0 * r if alpha is None else alpha
    started = time.perf_counter()
    if coordinated:
        from .coordinated import train_coordinated

        lora = train_coordinated(
            base, data.train.texts, r=r, alpha=alpha, target_modules=target_modules, seed=seed,
            progress=progress, **options,
        )  # fmt: skip
    else:
        options.pop("temperature", None)
        lora = train_lm_lora(
            base, data.train.texts, r=r, alpha=alpha, target_modules=target_modules, seed=seed,
            progress=progress, **options,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    save_lm_expert(
        path,
        lora_tensors=lora,
        r=r,
        alpha=alpha,
        target_modules=list(target_modules),
        base_model=base.name,
        base_fingerprint=base.weights_fingerprint,
        domain=data.name,
        anchor=base.spec.anchor if role == "expert" else "",
        role=role,
    )
    if role == "anchor":  # the shared expert's router row: its public texts, anchor merged
        from .token_routing import mlp_input_stats

        candidate = load_lm_expert(path, base=None)
        merged = base.fresh_model(merged=candidate).to(base.device).eval()
        texts = (data.router.texts or data.train.texts)[:ROUTER_TEXTS]
        stats = mlp_input_stats(base, texts, model=merged)
        save_lm_expert(
            path, lora_tensors=lora, r=r, alpha=alpha, target_modules=list(target_modules),
            base_model=base.name, base_fingerprint=base.weights_fingerprint,
            domain=data.name, role=role, router_stats=stats,
        )  # fmt: skip
    expert = load_lm_expert(path, base=base.spec if role == "expert" else None)
    summary = {
        "path": str(path),
        "role": role,
        "coordinated": coordinated,
        "domain": data.name,
        "train_texts": len(data.train),
        "train_seconds": seconds,
        "parameters": expert.header.num_parameters,
    }
    if not evaluate:
        return summary
    texts = data.eval.texts
    return {
        **summary,
        "eval_texts": len(texts),
        "eval_perplexity": perplexity(token_log_probs(expert, base, texts, cache, prefix_tokens)),
        "base_perplexity": perplexity(token_log_probs(None, base, texts, cache, prefix_tokens)),
    }
