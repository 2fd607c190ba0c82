"""Generating with a language-model mixture whose prompts are already routed.

- Each prompt with one expert (top-1), or any prompts in `merge` mode: transformers'
  own `generate` on the whole batch (KV cache, greedy or sampled); each expert's LoRA
  branch runs on the group of prompts routed to it.
- `mix` mode with several experts: a decoding loop over a batch widened to one row per
  (prompt, selected expert), one forward pass and one KV cache a step, that mixes each
  prompt's experts' next-token distributions with the gate's weights.
"""

from __future__ import annotations

import torch

MAX_PROMPT_TOKENS = 1024


def _left_padded(base, prompts: list[str]) -> dict[str, torch.Tensor]:
    tokenizer = base.tokenizer
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(
            list(prompts),
            padding=True,
            truncation=True,
            max_length=MAX_PROMPT_TOKENS,
            return_tensors="pt",
        )
    finally:
        tokenizer.padding_side = side
    return {k: v.to(base.device) for k, v in batch.items() if k != "token_type_ids"}


def _decode(base, new_tokens: torch.Tensor) -> list[str]:
    return base.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def generate_grouped(base, prompts, names, weights, *, max_new_tokens, do_sample,
                     temperature, top_p, seed, min_new_tokens=0) -> list[str]:  # fmt: skip
    """transformers' generate, once for the whole batch: each row with its one expert
    (top-1: every expert's LoRA branch runs on its group of rows only) or with its
    experts' merged LoRA deltas."""
    options = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if min_new_tokens:
        options["min_new_tokens"] = min_new_tokens
    if do_sample:
        options.update(temperature=temperature, top_p=top_p)
    else:  # greedy: no sampling settings, so transformers does not warn about them
        options.update(temperature=None, top_p=None, top_k=None)
    batch = _left_padded(base, prompts)
    torch.manual_seed(seed)
    with base.bank.mixed(names, weights):
        tokens = base.model.generate(**batch, pad_token_id=base.tokenizer.pad_token_id, **options)
    return _decode(base, tokens[:, batch["input_ids"].shape[1] :])


def _next_token(probs: torch.Tensor, do_sample, temperature, top_p, generator) -> torch.Tensor:
    """The next token of each row from the mixture's distribution (B, V)."""
    if not do_sample:
        return probs.argmax(-1)
    if temperature != 1.0:
        probs = probs.clamp(min=1e-30).pow(1.0 / temperature)
        probs = probs / probs.sum(-1, keepdim=True)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(-1, descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p  # (B, V) the nucleus
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def generate_mixed(base, prompts, names, weights, *, max_new_tokens, do_sample,
                   temperature, top_p, seed, min_new_tokens=0) -> list[str]:  # fmt: skip
    """p(x_t) = sum_k g_k p_k(x_t | x_<t): the batch is widened to one row per (prompt,
    selected expert), each row with its expert's adapter, so every step is one forward
    pass with one KV cache; each prompt's experts' next-token distributions are mixed."""
    batch = _left_padded(base, prompts)
    w = weights.to(base.device)
    pairs = (w > 0).nonzero()  # (P, 2): (prompt, expert) for every selected expert
    rows, experts = pairs[:, 0], pairs[:, 1]
    weight = w[rows, experts]  # (P,)
    table = torch.zeros(len(rows), len(names), device=base.device)
    table[torch.arange(len(rows)), experts] = 1.0  # each widened row: its one expert
    mask = batch["attention_mask"][rows]  # (P, L)
    eos, pad = base.tokenizer.eos_token_id, base.tokenizer.pad_token_id
    generator = torch.Generator(device=base.device).manual_seed(seed)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=base.device)
    new_tokens = []
    with base.bank.mixed(names, table):
        out = base.model(
            input_ids=batch["input_ids"][rows],
            attention_mask=mask,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
        )
        for step in range(max_new_tokens):
            per_row = weight[:, None] * torch.softmax(out.logits[:, -1].float(), -1)  # (P, V)
            probs = torch.zeros(len(prompts), per_row.shape[1], device=base.device)
            probs.index_add_(0, rows, per_row)  # (B, V): each prompt's mixture
            if step < min_new_tokens:
                probs[:, eos] = 0  # as transformers does: no end before the minimum
            token = _next_token(probs, do_sample, temperature, top_p, generator)  # (B,)
            token = torch.where(finished, torch.full_like(token, pad), token)
            new_tokens.append(token)
            finished |= token == eos
            if bool(finished.all()):
                break
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], 1)
            out = base.model(
                input_ids=token[rows, None],
                attention_mask=mask,
                position_ids=mask.sum(-1, keepdim=True) - 1,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
    if not new_tokens:
        return [""] * len(prompts)
    return _decode(base, torch.stack(new_tokens, 1))
