"""Sizes of a composition's exports for a base of about 1B parameters, counted from its
parameter shapes (bench/export_lm.py records them as `llama_1b`)."""

from __future__ import annotations

import torch

MB = 1e6


def one_billion(experts: int = 4, r: int = 8) -> dict:
    """Sizes for a randomly initialised Llama-family base of about 1B parameters (the
    TinyLlama-1.1B shape), from its parameter shapes: no weights are made."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                         num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                         tie_word_embeddings=False)  # fmt: skip
    with torch.device("meta"):
        llama = LlamaForCausalLM(config)
    params = {n: p.numel() for n, p in llama.named_parameters()}
    total = sum(params.values())
    mlp = sum(n for k, n in params.items() if ".mlp." in k)
    d, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * d // config.num_attention_heads
    expert = layers * r * 3 * (d + i)  # LoRA on gate_proj, up_proj, down_proj
    anchor = expert + layers * r * (2 * (d + d) + 2 * (d + kv))  # and q, k, v, o
    routers = layers * (experts + 1) * d
    return {
        "parameters": total,
        "base_mb": 4 * total / MB,
        "light_mb": 4 * (experts * expert + anchor + routers) / MB,
        "full_mb": 4 * (total - mlp + (experts + 1) * mlp + routers) / MB,
        "gguf_f16_mb": 2 * (total - mlp + (experts + 1) * mlp + routers) / MB,
        "experts": experts,
        "rank": r,
        "how": "counted from the parameter shapes (float32 files, f16 GGUF), not written",
    }
