"""A tiny randomly initialised BERT base model and synthetic domains, for fast tests and
benchmarks of the machinery (the real datasets and base model are in routing.data)."""

from __future__ import annotations

import os
import random

# Word lists of two synthetic domains; each label has its own words.
TOPICS = {
    "weather": {
        "sunny": "sun bright warm clear dry heat summer light".split(),
        "rainy": "rain wet storm cloud umbrella drizzle flood grey".split(),
    },
    "food": {
        "sweet": "cake sugar honey candy dessert chocolate jam cookie".split(),
        "salty": "salt chips pretzel olive cheese bacon soy pickle".split(),
        "sour": "lemon vinegar lime sour tart yogurt kimchi grapefruit".split(),
    },
    "sport": {
        "win": "win victory champion trophy goal score triumph medal".split(),
        "lose": "lose defeat miss fumble relegated injury loss penalty".split(),
    },
}
FILLER = "the a of and to in is it was with for on this that very".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary() -> list[str]:
    words = set(FILLER)
    for labels in TOPICS.values():
        for ws in labels.values():
            words.update(ws)
    return SPECIAL + sorted(words)


def synthetic_rows(domain: str, n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(f"{domain}-{seed}")
    rows = []
    labels = TOPICS[domain]
    for i in range(n):
        label = sorted(labels)[i % len(labels)]
        words = rng.choices(labels[label], k=6) + rng.choices(FILLER, k=2)
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {rng.choice(FILLER)}", label))
    return rows


def synthetic_domain(domain: str, n: int = 900, seed: int = 0):
    from routing.data import Split, split_unsplit

    rows = synthetic_rows(domain, n, seed)
    return split_unsplit(domain, Split([t for t, _ in rows], [lab for _, lab in rows]))


def build_tiny_base(folder) -> str:
    """A 2-layer BERT with hidden size 32 and a word-level vocabulary, saved to `folder`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocabulary())}).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocabulary()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder
