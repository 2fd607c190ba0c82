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
    for _ in range(n):
        motif = rng.sample(vocab, 3)
        text = []
        for j in range(words):
            text.append(motif[j % 3] if rng.random() < 0.8 else rng.choice(FILLER))
        out.append(" ".join(text))
    return out


def word_tokenizer():
    """A word-level tokenizer of the synthetic domains' words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(lm_vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )


def smollm2_tokenizer():
    """SmolLM2's own tokenizer (49,152 tokens), read from the packaged GGUF file: one that
    llama.cpp's converter knows, for tests of GGUF files."""
    from transformers import AutoTokenizer

    from routing.basemodels import DEFAULT_LM_BASE, gguf_file, resolve_base_model

    return AutoTokenizer.from_pretrained(
        resolve_base_model(DEFAULT_LM_BASE), gguf_file=gguf_file(DEFAULT_LM_BASE)
    )


def build_tiny_lm(folder, tokenizer=None) -> str:
    """A 2-layer Llama with hidden size 32 and a word-level tokenizer (or `tokenizer`),
    saved to `folder` (tied embeddings and grouped-query attention, as SmolLM2 has)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    tokenizer = tokenizer or word_tokenizer()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    vocab = tokenizer.get_vocab()
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
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def save_lm_peft_adapter(folder, base_location, *, seed=0, r=4, targets=("q_proj", "v_proj"),
                         gguf_file=None, scale=0.3):  # fmt: skip
    """A plain PEFT CAUSAL_LM adapter of a base model with random (non-zero) LoRA weights
    of standard deviation `scale`, saved the ordinary way (`save_pretrained`)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file, "dtype": torch.float32} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(base_location, **kwargs)
    torch.manual_seed(seed)
    config = LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=2 * r, target_modules=list(targets))
    peft = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * scale)
    peft.save_pretrained(folder)
    return folder


def peft_lm(folder, base_location, gguf_file=None):
    """What PEFT and transformers load for a saved CAUSAL_LM adapter (eval mode)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": gguf_file, "dtype": torch.float32} if gguf_file else {}
    base = AutoModelForCausalLM.from_pretrained(base_location, **kwargs)
    return PeftModel.from_pretrained(base, folder).eval()


def pretrain_tiny_lm(folder, *, steps=80, seed=0) -> str:
    """Train the tiny Llama in `folder` (all its weights) on every synthetic domain's
    texts, as a base model is pretrained before anyone adapts it: a random base predicts
    nothing, so no adapter could make it worse."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    texts = [t for name in LM_DOMAINS for t in lm_texts(name, 200, words=60, seed=seed + 100)]
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(texts), (16,), generator=g).tolist()
        batch = tokenizer([texts[i] for i in pick], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(folder)
    return str(folder)
