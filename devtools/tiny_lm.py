"""A tiny randomly initialised Llama causal LM and synthetic text domains, for fast tests of
language-model mixtures (the real base is SmolLM2-135M-Instruct from its package)."""

from __future__ import annotations

import os
import random

from .tiny import FILLER, TOPICS

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]
# Text domains: each draws its words from its own topic's lists, plus filler.
LM_DOMAINS = {name: [w for words in TOPICS[name].values() for w in words] for name in TOPICS}


def lm_vocabulary() -> list[str]:
    words = set(FILLER)
    for ws in LM_DOMAINS.values():
        words.update(ws)
    return SPECIAL + sorted(words)


def lm_texts(domain: str, n: int, *, words: int = 24, seed: int = 0) -> list[str]:
    """`n` texts of a synthetic domain; each repeats a few of the domain's words in a
    pattern, so an adapter trained on the domain predicts its continuations better."""
    rng = random.Random(f"{domain}-lm-{seed}")
    vocab = LM_DOMAINS[domain]
    out = []
    for i in range(n):
        motif = rng.sample(vocab, 3)
        text = []
        for j in range(words):
            text.append(motif[j % 3] if rng.random() < 0.8 else rng.choice(FILLER))
        out.append(" ".join(text))
    return out


def build_tiny_lm(folder) -> str:
    """A 2-layer Llama with hidden size 32 and a word-level tokenizer, saved to `folder`
    (tied embeddings and grouped-query attention, as SmolLM2 has)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    vocab = {w: i for i, w in enumerate(lm_vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
