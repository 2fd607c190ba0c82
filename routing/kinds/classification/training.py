"""Training classification experts: a head on cached features, a LoRA adapter with PEFT,
and writing either as a contract file."""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from ...cache import TensorCache
from ...gate_training import shuffled_batches
from ...splits import DomainData
from .composing import expert_log_probs
from .encoder import BaseEncoder
from .experts import HeadExpert, load_expert, save_head_expert, save_lora_expert
from .scoring import accuracy


def train_head(
    features: torch.Tensor,  # (n, D) cached base features
    targets: torch.Tensor,  # (n,) label index
    n_labels: int,
    *,
    hidden: int = 256,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> HeadExpert:
    """Train a head expert on frozen features. Seconds on a laptop CPU."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    head = HeadExpert(features.shape[1], hidden, n_labels)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    head.train()
    for _ in tqdm(range(epochs), desc="training head", unit="epoch", disable=not progress):
        for idx in shuffled_batches(len(features), batch_size, g):
            loss = nn.functional.cross_entropy(head(features[idx]), targets[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return head.eval().requires_grad_(False)


def train_lora(
    encoder: BaseEncoder,
    texts: list[str],
    targets: torch.Tensor,
    n_labels: int,
    *,
    r: int = 8,
    alpha: float = 16.0,
    target_modules: tuple[str, ...] = ("query", "value"),
    epochs: int = 2,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    probe_features: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[dict[str, torch.Tensor], nn.Linear]:
    """Train a PEFT LoRA adapter on a copy of the encoder plus a classification layer.

    With `probe_features` (the frozen base's pooled features of `texts`), the
    classifier starts as a linear probe fitted on them, so even a short LoRA
    run starts from what a probe already knows instead of from chance.
    Returns canonical LoRA tensors ("encoder.layer.0.attention.self.query.lora_A.weight")
    and the classifier.
    """
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    config = LoraConfig(
        r=r, lora_alpha=alpha, target_modules=list(target_modules), lora_dropout=0.05
    )
    # A fresh copy: the shared encoder may carry other experts' adapters.
    model = get_peft_model(encoder.fresh_model(), config)
    model.to(encoder.device).train()
    classifier = nn.Linear(encoder.hidden_size, n_labels)
    if probe_features is not None:
        fit_linear_probe(classifier, probe_features, targets)
    classifier.to(encoder.device)
    params = [p for p in model.parameters() if p.requires_grad] + list(classifier.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(texts) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(steps, 1), pct_start=0.1)
    bar = tqdm(total=steps, desc="training lora", unit="step", disable=not progress)
    targets = targets.to(encoder.device)
    for _ in range(epochs):
        for idx in shuffled_batches(len(texts), batch_size, g):
            batch = encoder.tokenize([texts[i] for i in idx])
            logits = classifier(encoder.pooled(batch, model=model))  # (B, L)
            loss = nn.functional.cross_entropy(logits, targets[idx.to(encoder.device)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    state = get_peft_model_state_dict(model)
    lora = {k.removeprefix("base_model.model."): v.detach().cpu() for k, v in state.items()}
    return lora, classifier.cpu().eval().requires_grad_(False)


def fit_linear_probe(
    layer: nn.Linear, features: torch.Tensor, targets: torch.Tensor, steps: int = 300
) -> nn.Linear:
    """Fit a linear layer on frozen features, full batch (a logistic-regression probe)."""
    features = features.clone()  # cached features may be inference tensors
    opt = torch.optim.Adam(layer.parameters(), lr=0.01, weight_decay=1e-4)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(layer(features), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return layer


def train_expert_file(
    encoder: BaseEncoder,
    data: DomainData,
    path,
    *,
    architecture: str = "head",
    cache: TensorCache,
    seed: int = 0,
    progress=False,
    **options,
) -> dict:
    """Train an expert on a domain's training split and write it as a contract file.

    Returns a summary with the expert's accuracy on the domain's eval split.
    """
    index = {label: i for i, label in enumerate(data.labels)}
    targets = torch.tensor([index[x] for x in data.train.labels])
    started = time.perf_counter()
    if architecture == "head":
        feats = cache.features(encoder, data.train.texts, progress=progress and "embedding train")
        head = train_head(feats, targets, len(data.labels), seed=seed, progress=progress, **options)
        save_head_expert(path, head, labels=data.labels, base_model=encoder.name, domain=data.name)
    elif architecture == "lora":
        r = options.pop("r", 8)
        alpha = options.pop("alpha", 2.0 * r)
        targets_modules = tuple(options.pop("target_modules", ("query", "value")))
        probe = cache.features(encoder, data.train.texts, progress=progress and "embedding train")
        lora, classifier = train_lora(
            encoder,
            data.train.texts,
            targets,
            len(data.labels),
            r=r,
            alpha=alpha,
            target_modules=targets_modules,
            seed=seed,
            probe_features=probe,
            progress=progress,
            **options,
        )
        save_lora_expert(
            path,
            lora_tensors=lora,
            classifier=classifier,
            r=r,
            alpha=alpha,
            target_modules=list(targets_modules),
            labels=data.labels,
            base_model=encoder.name,
            domain=data.name,
        )
    else:
        raise ValueError(f"unknown expert architecture {architecture!r}; use head or lora")
    seconds = time.perf_counter() - started
    expert = load_expert(path, base=encoder.spec, labels=data.labels)
    lp = expert_log_probs(expert, encoder, data.eval.texts, cache, progress)
    truth = torch.tensor([index.get(x, -1) for x in data.eval.labels])
    return {
        "path": str(path),
        "architecture": architecture,
        "domain": data.name,
        "train_examples": len(data.train),
        "train_seconds": seconds,
        "eval_examples": len(data.eval),
        "eval_accuracy": accuracy(lp.argmax(-1), truth),
        "parameters": expert.header.num_parameters,
    }
