"""Shared fixtures: a tiny randomly initialised BERT encoder and synthetic domains."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The test Hub server speaks the LFS protocol, not Xet.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

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


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    return build_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture
def tiny_encoder(tiny_base):
    from routing.base import BaseEncoder

    return BaseEncoder(tiny_base, device="cpu", max_length=32)


@pytest.fixture
def cache(tmp_path):
    from routing.cache import TensorCache

    return TensorCache(tmp_path / "cache")


@pytest.fixture(scope="session")
def domains():
    return {"weather": synthetic_domain("weather"), "food": synthetic_domain("food")}


def make_head_file(path, encoder, labels, domain=None, seed=0, hidden=16):
    import torch

    from routing.experts import HeadExpert, save_head_expert

    torch.manual_seed(seed)
    head = HeadExpert(encoder.hidden_size, hidden, len(labels))
    save_head_expert(path, head, labels=labels, base_model=encoder.name, domain=domain)
    return path


def make_lora_file(path, encoder, labels, domain=None, seed=0, r=4):
    """A LoRA expert with random (non-zero) A and B so that it changes the encoder."""
    import torch
    from torch import nn

    from routing.experts import save_lora_expert

    g = torch.Generator().manual_seed(seed)
    d = encoder.hidden_size
    lora = {}
    for layer in range(encoder.spec.num_layers):
        for module in ("attention.self.query", "attention.self.value"):
            key = f"encoder.layer.{layer}.{module}"
            lora[f"{key}.lora_A.weight"] = torch.randn(r, d, generator=g) * 0.3
            lora[f"{key}.lora_B.weight"] = torch.randn(d, r, generator=g) * 0.3
    classifier = nn.Linear(d, len(labels))
    with torch.no_grad():
        classifier.weight.copy_(torch.randn(len(labels), d, generator=g))
    save_lora_expert(
        path,
        lora_tensors=lora,
        classifier=classifier,
        r=r,
        alpha=2 * r,
        target_modules=["query", "value"],
        labels=labels,
        base_model=encoder.name,
        domain=domain,
    )
    return path


def save_plain_peft_adapter(folder, encoder, n_labels):
    """Save what a PEFT-only contributor uploads: adapter_model.safetensors + its config."""
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import AutoModel

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(encoder.location)
            self.classifier = nn.Linear(encoder.hidden_size, n_labels)

    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]
    )
    get_peft_model(Classifier(), config).save_pretrained(folder)


def save_seq_cls_adapter(
    folder,
    encoder,
    labels,
    *,
    rows=None,
    steps=30,
    target_modules=("query", "value"),
    modules_to_save=None,
    seed=0,
):
    """Save a LoRA adapter the ordinary PEFT way: AutoModelForSequenceClassification on the
    base, LoraConfig(task_type="SEQ_CLS"), save_pretrained. With `rows` (text, label) it
    trains for `steps` steps; without, its trainable weights are drawn at random so that
    every part of it (LoRA, pooler, classifier) changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder.location, num_labels=len(labels)
    )
    config = LoraConfig(
        task_type="SEQ_CLS",
        r=4,
        lora_alpha=8,
        target_modules=list(target_modules),
        modules_to_save=modules_to_save,
    )
    model = get_peft_model(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if rows is None:
        with torch.no_grad():
            for p in trainable:
                p.copy_(torch.randn_like(p) * 0.3)
    else:
        tokenizer = AutoTokenizer.from_pretrained(encoder.location)
        index = {label: i for i, label in enumerate(labels)}
        opt = torch.optim.AdamW(trainable, lr=1e-2)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            pick = torch.randint(len(rows), (16,), generator=g).tolist()
            batch = tokenizer([rows[i][0] for i in pick], padding=True, return_tensors="pt")
            target = torch.tensor([index[rows[i][1]] for i in pick])
            loss = model(**batch, labels=target).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.save_pretrained(folder)
    return folder


def peft_probabilities(folder, encoder, n_labels, texts, max_length=32):
    """What PEFT and transformers compute for a saved SEQ_CLS adapter: (n, L) probabilities."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = AutoModelForSequenceClassification.from_pretrained(encoder.location, num_labels=n_labels)
    model = PeftModel.from_pretrained(base, folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(encoder.location)
    batch = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**batch).logits.softmax(-1)
