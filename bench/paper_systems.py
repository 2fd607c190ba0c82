"""The systems the paper benchmark compares (bench/paper.py runs them): contributors'
experts, the monolithic baseline of the same budget, the gate variants, and what each
costs in counted FLOPs and measured time."""

from __future__ import annotations

import time

import torch

from routing.config import ClassifierRouting, GateConfig, LossWeights
from routing.data import load_domain
from routing.gate import Gate
from routing.kinds.classification.encoder import BaseEncoder
from routing.kinds.classification.experts import load_expert, save_head_expert, save_lora_expert
from routing.kinds.classification.flops import encoder_flops, lora_extra_flops, mlp_flops
from routing.kinds.classification.model import MoEClassifier
from routing.kinds.classification.training import (
    train_expert_file,
    train_head,
    train_lora,
)

DOMAINS = ("bbc", "reuters8", "20news", "rotten")
HEAD_HIDDEN = 256
LORA_R = 8
HEAD_EPOCHS = 30

# Sizes per domain and split; "lora" sizes are subsets of the "head" ones.
PROFILES = {
    "full": {
        "head": {"train": 4000, "router": 1500, "eval": 2000, "seeds": 3},
        "lora": {"train": 400, "router": 200, "eval": 300, "seeds": 3, "epochs": 1},
        "timing_texts": 128,
    },
    "quick": {
        "head": {"train": 300, "router": 150, "eval": 150, "seeds": 3},
        "lora": {"train": 48, "router": 32, "eval": 40, "seeds": 1, "epochs": 1},
        "timing_texts": 32,
    },
}

# Gate variants: (name, loss weights, top-k at inference); N = 4 experts.
DEFAULT = LossWeights()


def gate_variants(n: int) -> list[tuple[str, LossWeights, int, ClassifierRouting]]:
    """(system, loss weights, top-k, routing options): the hub's defaults but for the named
    change; `features-only` is the paper's gate (features only, experts as they are,
    router examples as they come)."""

    def w(**changes):
        return LossWeights(**{**DEFAULT.__dict__, **changes})

    hub = ClassifierRouting()
    paper = ClassifierRouting(
        gate_features="mean", read_experts=False, calibrate=False, balance_domains=False
    )
    return [
        ("gate-dense", DEFAULT, n, hub),
        ("gate-top2", DEFAULT, 2, hub),
        ("gate-top1", DEFAULT, 1, hub),
        ("features-only", DEFAULT, 2, paper),
        ("no-entropy", w(entropy_example=0.0, entropy_batch=0.0), 2, hub),
        ("no-balance", w(balance=0.0), 2, hub),
        ("no-routing-ce", w(routing=0.0), 2, hub),
        ("strong-entropy", w(entropy_batch=0.5), 2, hub),
    ]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def token_counts(encoder: BaseEncoder, texts: list[str]) -> torch.Tensor:
    enc = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)
    return torch.tensor([len(ids) for ids in enc["input_ids"]], dtype=torch.float64)


def limited_domains(sizes: dict, limit: int | None) -> dict:
    data = {}
    for name in DOMAINS:
        d = load_domain(name)
        for split in ("train", "router", "eval"):
            n = sizes[split] if limit is None else min(sizes[split], limit)
            setattr(d, split, getattr(d, split).limited(n))
        data[name] = d
    return data


def head_params(d: int, h: int, labels: int) -> int:
    return d * h + h + h * labels + labels


def train_experts(kind, encoder, data, cache, folder, seed, epochs) -> tuple[list, dict]:
    """Each contributor trains on its own domain; returns experts and training seconds."""
    experts, seconds = [], {}
    for name, d in data.items():
        path = folder / f"{kind}-{name}-{seed}.safetensors"
        options = (
            {"hidden": HEAD_HIDDEN, "epochs": HEAD_EPOCHS}
            if kind == "head"
            else {"r": LORA_R, "alpha": 2 * LORA_R, "epochs": epochs}
        )
        summary = train_expert_file(
            encoder, d, path, architecture=kind, cache=cache, seed=seed, **options
        )
        seconds[name] = summary["train_seconds"]
        experts.append(load_expert(path, base=encoder.spec, labels=d.labels, name=name))
    return experts, seconds


def train_monolithic(kind, encoder, data, labels, cache, folder, seed, epochs, budget):
    """One model of the same base trained centrally on all domains, same parameter budget."""
    index = {label: i for i, label in enumerate(labels)}
    texts = [t for d in data.values() for t in d.train.texts]
    targets = torch.tensor([index[x] for d in data.values() for x in d.train.labels])
    path = folder / f"{kind}-monolithic-{seed}.safetensors"
    d_model = encoder.hidden_size
    t0 = time.perf_counter()
    if kind == "head":
        hidden = max(1, round((budget - len(labels)) / (d_model + 1 + len(labels))))
        feats = torch.cat([cache.features(encoder, d.train.texts) for d in data.values()])
        head = train_head(feats, targets, len(labels), hidden=hidden, epochs=HEAD_EPOCHS, seed=seed)
        save_head_expert(path, head, labels=labels, base_model=encoder.name, domain="all")
        shape = {"hidden": hidden}
    else:
        r = LORA_R * len(data)
        probe = torch.cat([cache.features(encoder, d.train.texts) for d in data.values()])
        lora, cls = train_lora(
            encoder,
            texts,
            targets,
            len(labels),
            r=r,
            alpha=2 * r,
            epochs=epochs,
            seed=seed,
            probe_features=probe,
        )
        save_lora_expert(
            path,
            lora_tensors=lora,
            classifier=cls,
            r=r,
            alpha=2 * r,
            target_modules=["query", "value"],
            labels=labels,
            base_model=encoder.name,
            domain="all",
        )
        shape = {"r": r}
    seconds = time.perf_counter() - t0
    expert = load_expert(path, base=encoder.spec, labels=labels, name="monolithic")
    return expert, seconds, shape


def expert_flops(kind, encoder, expert, tokens: torch.Tensor) -> torch.Tensor:
    """Per-example FLOPs of running one expert (for lora: its whole adapted pass)."""
    spec, d = encoder.spec, encoder.hidden_size
    n_labels = len(expert.labels)
    if kind == "head":
        hidden = expert.head.hidden.out_features
        return torch.full_like(tokens, mlp_flops([d, hidden, n_labels]))
    modules = list(expert.header.lora.modules)
    r = expert.header.lora.r
    base = torch.tensor([encoder_flops(spec, int(t)) for t in tokens], dtype=torch.float64)
    extra = torch.tensor(
        [lora_extra_flops(spec, r, modules, int(t)) for t in tokens], dtype=torch.float64
    )
    return base + extra + mlp_flops([d, n_labels])


def timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_times(encoder, experts, names, gates, mono, data, profile) -> dict:
    """Seconds per example of each system's real execution on the same texts, one run."""
    log("measuring inference time")
    n = len(experts)
    per_domain = max(1, profile["timing_texts"] // len(data))
    texts = {name: d.eval.texts[:per_domain] for name, d in data.items()}
    t_texts = [t for name in names for t in texts[name]]
    timing = {}
    for name in ("gate-dense", "gate-top2", "gate-top1", "features-only"):
        comp, k, _ = gates[name]
        timing[name] = timed(lambda c=comp, k=k: c.predict_proba(t_texts, top_k=k))
    uniform_gate = Gate(encoder.hidden_size, n, GateConfig(top_k=n))
    with torch.no_grad():
        for p in uniform_gate.out.parameters():
            p.zero_()  # equal logits: exactly uniform weights
    uniform = MoEClassifier(encoder, experts, names, uniform_gate)
    timing["uniform"] = timed(lambda: uniform.predict_proba(t_texts, top_k=n))
    singles = {e.name: MoEClassifier.of_one(encoder, e) for e in experts}

    def run_oracle():  # each domain's texts through its own expert only
        for name, single in singles.items():
            single.predict_proba(texts[name])

    timing["oracle"] = timed(run_oracle)
    mono_comp = MoEClassifier.of_one(encoder, mono)
    timing["monolithic"] = timed(lambda: mono_comp.predict_proba(t_texts))
    return {k: v / len(t_texts) for k, v in timing.items()}
