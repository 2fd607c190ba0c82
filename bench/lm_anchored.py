"""The anchored systems of the language-model benchmark (bench/lm.py runs them): an anchor
trained on public text, experts on the MLP of the base with it merged (alone, or
coordinated with the shared expert), composed per sequence and per token, and the fair
single model: a multitask LoRA with the same total training compute and trainable
parameters, trained on every text any of them saw."""

from __future__ import annotations

import json
import math
import random
import time

import torch

from bench.lm_systems import log, score
from routing.config import GateConfig, LMRouting, TrainConfig
from routing.data import DomainData, Split
from routing.kinds.causal_lm.base import CausalBase
from routing.kinds.causal_lm.composing import cached_split, compose, token_log_probs
from routing.kinds.causal_lm.corpora import load_corpus
from routing.kinds.causal_lm.experts import load_lm_expert, save_lm_expert
from routing.kinds.causal_lm.layout import module_dims
from routing.kinds.causal_lm.scoring import mixture_log_probs, perplexity
from routing.kinds.causal_lm.token_composing import router_texts, token_routers
from routing.kinds.causal_lm.token_model import TokenMoECausalLM, tune_routers
from routing.kinds.causal_lm.training import train_lm_expert_file, train_lm_lora

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ANCHOR = {"texts": 256, "r": 16, "targets": ALL_LINEAR, "epochs": 1, "lr": 2e-3}
EXPERT = {"r": 8, "targets": MLP, "epochs": 2, "lr": 2e-3}
MULTITASK_LRS = (5e-4, 1e-3, 2e-3)  # searched on the router texts (never on eval)
TUNE_STEPS = 30
BATCH = 4
PREFIX = LMRouting().prefix_tokens  # the scored tokens follow the router's prefix


def public_data(seed: int, texts: int, router: int) -> DomainData:
    """The maintainer's public text: packaged convention speeches and debates (no domain of
    the benchmark holds them), drawn by the seed; its router part is fixed."""
    corpus = load_corpus("speeches")
    n = min(texts, len(corpus.train))
    train = random.Random(f"speeches-{seed}").sample(corpus.train.texts, n)
    return DomainData("speeches", [], Split(train), corpus.router.limited(router), Split([]))


def train_anchor(base: CausalBase, public: DomainData, seed: int, folder) -> tuple:
    """The seed's anchor file and its training seconds (None: found in `folder`, where the
    runs of one seed share it, trained the same way anyway)."""
    path = folder / f"anchor-{seed}.safetensors"
    if path.exists():
        return path, None
    log(f"seed {seed}: training the anchor on {len(public.train)} public texts")
    started = time.perf_counter()
    train_lm_expert_file(
        base, public, path, cache=None, r=ANCHOR["r"], target_modules=ANCHOR["targets"],
        epochs=ANCHOR["epochs"], lr=ANCHOR["lr"], seed=seed, role="anchor", evaluate=False,
    )  # fmt: skip
    return path, time.perf_counter() - started


def trained_once(path, train, what: str) -> float:
    """Train into `path` with `train()` unless a finished file is there (its seconds are kept
    beside it, written after the weights), and return the training seconds: so that a
    search over learning rates can be grown or resumed run by run."""
    timing = path.with_suffix(".json")
    if timing.exists():
        log(f"{what}: found in {path.parent}")
        return json.loads(timing.read_text())["seconds"]
    log(what)
    started = time.perf_counter()
    train()
    seconds = time.perf_counter() - started
    timing.write_text(json.dumps({"seconds": seconds}))
    return seconds


def _ranked(on_router: float | None) -> float:
    """A rate's rank in a search: its router perplexity, a NaN (diverged) last."""
    return math.inf if on_router is None or math.isnan(on_router) else on_router


def train_anchored(base: CausalBase, data: dict, seed: int, folder, *, coordinated: bool,
                   lrs=None, cache=None):  # fmt: skip
    """Each domain's expert on the anchored base: LoRA on the MLP, alone or coordinated. With
    several `lrs`, each contributor keeps the rate whose expert has the lowest perplexity
    on its own router texts (never on eval). Returns (experts, seconds of the kept ones,
    {domain: {"lr", "router_perplexity"}} when searched)."""
    experts, seconds, search = [], [], {}
    how = "coordinated" if coordinated else "anchored"
    lrs = list(lrs or [EXPERT["lr"]])
    for name, domain in data.items():
        tried = {}
        for lr in lrs:
            path = folder / f"{how}-{name}-{seed}-{len(domain.train)}-{lr:g}.safetensors"

            def train(path=path, lr=lr, domain=domain):
                train_lm_expert_file(
                    base, domain, path, cache=None, r=EXPERT["r"], lr=lr, seed=seed,
                    target_modules=EXPERT["targets"], epochs=EXPERT["epochs"],
                    coordinated=coordinated, evaluate=False,
                )  # fmt: skip

            took = trained_once(path, train, f"seed {seed}: the {how} {name} expert on "
                                f"{len(domain.train)} texts, lr {lr:g}")  # fmt: skip
            expert = load_lm_expert(path, base=base.spec, name=f"{how} {name}")
            on_router = (
                perplexity(token_log_probs(expert, base, domain.router.texts, cache, PREFIX))
                if len(lrs) > 1 else None
            )  # fmt: skip
            tried[lr] = (expert, took, on_router)
        best = min(tried, key=lambda lr: _ranked(tried[lr][2]))
        experts.append(tried[best][0])
        seconds.append(tried[best][1])
        if len(lrs) > 1:
            on_router = {f"{lr:g}": tried[lr][2] for lr in lrs}
            search[name] = {"lr": best, "router_perplexity": on_router}
            log(f"seed {seed}: the {how} {name} expert keeps lr {best:g} "
                f"({', '.join(f'{lr:g}: {tried[lr][2]:.3f}' for lr in lrs)})")  # fmt: skip
    return experts, seconds, search


def fair_budget(spec, anchor_texts: int, train: int, domains: int) -> dict:
    """The single model's budget: the anchor's and every expert's optimiser steps, and a
    LoRA on every linear module with as many trainable parameters as the anchor and the
    experts together (rank rounded to the nearest)."""
    per_rank = {m: sum(module_dims(m, spec)) * spec.num_layers for m in ALL_LINEAR}
    anchor = ANCHOR["r"] * sum(per_rank[m] for m in ANCHOR["targets"])
    experts = domains * EXPERT["r"] * sum(per_rank[m] for m in EXPERT["targets"])
    rank = max(1, round((anchor + experts) / sum(per_rank.values())))
    steps = ANCHOR["epochs"] * -(-anchor_texts // BATCH)
    steps += domains * EXPERT["epochs"] * -(-train // BATCH)
    return {"rank": rank, "steps": steps, "parameters": anchor + experts}


def train_fair_multitask(base: CausalBase, data: dict, public: DomainData, seed: int, folder,
                         lrs: list[float] | None, cache) -> tuple:  # fmt: skip
    """The fair single model on the plain base: the best of `lrs` (default MULTITASK_LRS) on
    the domains' router texts. A rate already trained in `folder` (same seed, same texts) is
    reused with its recorded seconds, so that a search can grow run by run. Returns (expert,
    seconds, what was searched)."""
    texts = public.train.texts + [t for d in data.values() for t in d.train.texts]
    random.Random(seed).shuffle(texts)
    budget = fair_budget(base.spec, len(public.train), len(next(iter(data.values())).train),
                         len(data))  # fmt: skip
    router = [t for d in data.values() for t in d.router.texts]
    tried = {}
    for candidate in lrs or MULTITASK_LRS:
        path = folder / f"fair-multitask-{seed}-{len(texts)}-{candidate:g}.safetensors"

        def train(path=path, candidate=candidate):
            lora = train_lm_lora(base, texts, r=budget["rank"], alpha=2.0 * budget["rank"],
                                 target_modules=ALL_LINEAR, lr=candidate, seed=seed,
                                 steps=budget["steps"])  # fmt: skip
            save_lm_expert(path, lora_tensors=lora, r=budget["rank"], alpha=2.0 * budget["rank"],
                           target_modules=list(ALL_LINEAR), base_model=base.name,
                           base_fingerprint=base.weights_fingerprint, domain="all")  # fmt: skip

        seconds = trained_once(path, train, f"seed {seed}: the fair multitask LoRA, "
                               f"r={budget['rank']}, {budget['steps']} steps on {len(texts)} "
                               f"texts, lr {candidate:g}")  # fmt: skip
        expert = load_lm_expert(path, base=base.spec, name="fair multitask")
        on_router = perplexity(token_log_probs(expert, base, router, cache, PREFIX))
        log(f"seed {seed}: lr {candidate:g}: router perplexity {on_router:.3f}")
        tried[candidate] = (expert, seconds, on_router)
    best = min(tried, key=lambda c: _ranked(tried[c][2]))
    expert, seconds, _ = tried[best]
    search = {"lr": best, "router_perplexity": {f"{c:g}": tried[c][2] for c in tried}, **budget}
    return expert, seconds, search


def fair_multitask_system(base: CausalBase, data: dict, public: DomainData, seed: int, folder,
                          lrs, cache) -> tuple[dict, float, dict]:  # fmt: skip
    """The fair single model's held-out figures, training seconds and search."""
    routing = LMRouting()
    expert, seconds, search = train_fair_multitask(base, data, public, seed, folder, lrs, cache)
    texts = [t for d in data.values() for t in d.eval.texts]
    split = cached_split([expert], list(data), data, "eval", base, cache, routing)
    figures = score(token_log_probs(expert, base, texts, cache, routing.prefix_tokens), split)
    return figures, seconds, search


def anchored_systems(base: CausalBase, families: dict, data, cache,
                     seed: int) -> tuple[dict, dict]:  # fmt: skip
    """Every anchored system's held-out figures for one seed, and what the figures and
    timings need besides (the per-token models, the anchored split)."""
    routing = LMRouting()
    results, extras = {}, {}
    domains = list(data)
    for family, experts in families.items():
        split = cached_split(experts, domains, data, "eval", base, cache, routing)
        if "anchor alone" not in results:
            results["anchor alone"] = score(split.base_lp, split)
            extras["split"] = split
        one_hot = split.domain_experts.float()
        results[f"{family} experts, oracle"] = score(
            mixture_log_probs(one_hot, split.token_lp), split, one_hot
        )
        log(f"seed {seed}: {family} experts, learned sequence router")
        learned = compose(
            base,
            experts,
            domains,
            data,
            cache=cache,
            routing=routing,
            gate_config=GateConfig(top_k=1),
            train_config=TrainConfig(seed=seed),
        )
        weights = learned.model.cached_weights(learned.eval_split)
        results[f"{family} experts, learned top-1"] = score(
            mixture_log_probs(weights, learned.eval_split.token_lp), split, weights
        )
        routers, _ = token_routers(base, experts, domains, data, cache=cache,
                                   routing=LMRouting(granularity="token"))  # fmt: skip
        variants = [("token top-2", 2, False), ("token top-2 tuned", 2, True)]
        if family == "anchored":
            variants.insert(0, ("token top-1", 1, False))
        for label, k, tuned in variants:
            log(f"seed {seed}: {family} experts, {label}")
            model = TokenMoECausalLM(base, experts, domains, routers=routers, top_k=k)
            if tuned:
                model.info["tuning"] = tune_routers(model, router_texts(data, domains),
                                                    steps=TUNE_STEPS, seed=seed)  # fmt: skip
            lp = torch.cat([model.token_log_probs(data[d].eval.texts) for d in domains])
            entry = score(lp, split)
            entry["overall"]["routing_accuracy"] = _token_home(model, data, domains)
            results[f"{family} experts, {label}"] = entry
            extras[f"{family} experts, {label}"] = model
    return results, extras


def _token_home(model: TokenMoECausalLM, data, domains) -> float:
    """The share of each domain's held-out tokens whose top expert is its own (mean over
    layers and domains)."""
    shares = []
    for name in domains:
        per_layer = model.token_routing(data[name].eval.texts)  # (L, E)
        own = [1 + k for k, d in enumerate(model.expert_domains) if d == name]
        shares.append(float(per_layer[:, own].sum(-1).mean()))
    return sum(shares) / len(shares)


def token_timings(plain: CausalBase, model: TokenMoECausalLM, texts, prompts, new_tokens,
                  repeats=3) -> dict:  # fmt: skip
    """Prefill and generation tokens/s of the base and of the per-token composition (top-1
    and top-2), in one run on the same texts and prompts."""
    from bench.lm_systems import timed

    batch = plain.tokenize(texts)
    tokens = int(batch["attention_mask"].sum())
    prompt_batch = plain.tokenize(prompts)
    options = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
               "pad_token_id": plain.tokenizer.pad_token_id}  # fmt: skip
    generated = len(prompts) * new_tokens
    out = {}
    with torch.inference_mode():
        for label, run, k in (
            ("base model", plain.model, None),
            ("token top-1", model.model, 1),
            ("token top-2", model.model, 2),
        ):
            for layer in model.layers:
                layer.top_k = k or layer.top_k
            with plain.bank.off():
                out[label] = {
                    "prefill": tokens / timed(lambda run=run: run(**batch), repeats),
                    "generate": generated
                    / timed(lambda run=run: run.generate(**prompt_batch, **options), repeats),
                }
    for measured in out.values():
        measured["prefill_ratio"] = measured["prefill"] / out["base model"]["prefill"]
        measured["generate_ratio"] = measured["generate"] / out["base model"]["generate"]
    return out


def token_flops(spec, vocab: int, experts: int, tokens: int = 128) -> dict:
    """Counted FLOPs per token of the per-token compositions against the base: the router
    (D x E a layer) and per selected expert its LoRA deltas on the MLP (gate, up and down
    run once: the deltas stay factored and the down projection takes the weighted sum)."""
    from routing.kinds.causal_lm.flops import lora_flops
    from routing.kinds.causal_lm.flops import token_flops as base_flops

    base = base_flops(spec, vocab, tokens)
    modules = [f"model.layers.{i}.mlp.{m}" for i in range(spec.num_layers) for m in MLP]
    deltas = lora_flops(spec, EXPERT["r"], modules)
    router = 2.0 * spec.hidden_size * experts * spec.num_layers
    return {
        "base model": base,
        "token top-1": base + router + deltas,
        "token top-2": base + router + 2 * deltas,
    }


def add_expert_seconds(base: CausalBase, experts: list, data: dict, cache, seed: int) -> dict:
    """Adding the 8th expert to a per-token composition of 7 (the other rows' statistics in
    the cache, as a hub keeps them): its router rows, then the tuning, timed."""
    domains = [e.header.domain for e in experts]
    routing = LMRouting(granularity="token")
    previous_routers, _ = token_routers(base, experts[:-1], domains[:-1], data, cache=cache,
                                        routing=routing)  # fmt: skip
    previous = TokenMoECausalLM(base, experts[:-1], domains[:-1], routers=previous_routers)
    started = time.perf_counter()
    routers, info = token_routers(base, experts, domains, data, cache=cache, routing=routing,
                                  previous=previous)  # fmt: skip
    rows = time.perf_counter() - started
    model = TokenMoECausalLM(base, experts, domains, routers=routers)
    tuning = tune_routers(model, router_texts(data, domains), steps=TUNE_STEPS, seed=seed)
    return {"experts": len(experts), "rows_seconds": rows, "tuning_seconds": tuning["seconds"],
            "seconds": rows + tuning["seconds"], **info}  # fmt: skip
