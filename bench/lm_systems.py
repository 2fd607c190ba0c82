"""The systems the language-model benchmark compares (bench/lm.py runs them): contributors'
LoRA experts, the multitask LoRA of the same budget, every router and way of mixing,
and what each costs."""

from __future__ import annotations

import random
import time

import torch

from routing.config import GateConfig, LMRouting, LossWeights, TrainConfig
from routing.data import DomainData, Split
from routing.kinds.causal_lm.composing import cached_split, compose, token_log_probs, token_task
from routing.kinds.causal_lm.corpora import load_corpus
from routing.kinds.causal_lm.experts import load_lm_expert, save_lm_expert
from routing.kinds.causal_lm.model import MoECausalLM
from routing.kinds.causal_lm.scoring import mixture_log_probs, perplexity
from routing.kinds.causal_lm.training import train_lm_lora
from routing.metrics import routing_matrix, utilisation

DOMAINS = ("bbc", "rotten", "20news", "python")
LORA_R = 8
# The first systems' experts, as they were measured first: attention LoRA on the plain base
# (the anchored systems' experts are LoRA on the MLP: bench/lm_anchored.py).
PRESENT_TARGETS = ("q_proj", "v_proj")
PROFILES = {
    "full": {"train": 64, "router": 32, "eval": 32, "seeds": 3, "prompts": 8, "new_tokens": 32},
    "quick": {"train": 16, "router": 8, "eval": 8, "seeds": 1, "prompts": 4, "new_tokens": 16},
}
DEFAULT = LossWeights()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def domains_for(sizes: dict, seed: int, limit: int | None) -> dict[str, DomainData]:
    """Each domain's training texts drawn by the seed; router and eval parts fixed."""
    out = {}
    for name in DOMAINS:
        corpus = load_corpus(name)
        n = min(limit or sizes["train"], sizes["train"])
        train = random.Random(f"{name}-{seed}").sample(corpus.train.texts, n)
        router = corpus.router.limited(min(limit or sizes["router"], sizes["router"]))
        evaluation = corpus.eval.limited(min(limit or sizes["eval"], sizes["eval"]))
        out[name] = DomainData(name, [], Split(train), router, evaluation, corpus.description)
    return out


def _train(base, texts, folder, name, r, seed, domain) -> tuple:
    started = time.perf_counter()
    lora = train_lm_lora(base, texts, r=r, alpha=2.0 * r, seed=seed, target_modules=PRESENT_TARGETS)
    seconds = time.perf_counter() - started
    path = folder / f"{name}-{seed}.safetensors"
    save_lm_expert(
        path,
        lora_tensors=lora,
        r=r,
        alpha=2.0 * r,
        target_modules=list(PRESENT_TARGETS),
        base_model=base.name,
        base_fingerprint=base.weights_fingerprint,
        domain=domain,
    )
    return load_lm_expert(path, base=base.spec, name=name), seconds


def train_experts(base, data, seed, folder) -> tuple[list, list[float]]:
    experts, seconds = [], []
    for name, domain in data.items():
        log(f"seed {seed}: training the {name} expert on {len(domain.train)} texts")
        expert, took = _train(base, domain.train.texts, folder, name, LORA_R, seed, name)
        experts.append(expert)
        seconds.append(took)
    return experts, seconds


def train_multitask(base, data, seed, folder):
    """One LoRA on every domain's training texts, with the experts' total budget (rank
    N x r on the same modules: the same number of trainable parameters)."""
    texts = [t for d in data.values() for t in d.train.texts]
    random.Random(seed).shuffle(texts)
    log(f"seed {seed}: training the multitask LoRA (r={LORA_R * len(data)}) on {len(texts)} texts")
    return _train(base, texts, folder, "multitask", LORA_R * len(data), seed, "all")


def gate_variants() -> list[tuple[str, LossWeights, int, str]]:
    def w(**changes):
        return LossWeights(**{**DEFAULT.__dict__, **changes})

    return [
        ("learned top-1", DEFAULT, 1, "mix"),
        ("learned top-2 mixed", DEFAULT, 2, "mix"),
        ("learned top-2 merged", DEFAULT, 2, "merge"),
        ("ablation: no entropy terms", w(entropy_example=0.0, entropy_batch=0.0), 1, "mix"),
        ("ablation: no balance", w(balance=0.0), 1, "mix"),
        ("ablation: no routing cross-entropy", w(routing=0.0), 1, "mix"),
    ]


def score(lp: torch.Tensor, split, weights: torch.Tensor | None = None) -> dict:
    """Perplexity per domain and overall of token log-probs (n, T) of `split`'s texts,
    with the routing figures when the texts were routed by `weights` (n, N)."""
    out = {"domains": {}, "overall": {"perplexity": perplexity(lp)}}
    for d, name in enumerate(split.domains):
        out["domains"][name] = perplexity(lp[split.domain_idx == d])
    if weights is not None:
        top = weights.argmax(-1)
        home = split.domain_experts[torch.arange(len(top)), top].float().mean()
        out["overall"]["routing_accuracy"] = float(home)
        out["utilisation"] = utilisation(weights)
        out["routing_matrix"] = routing_matrix(weights, split.domain_idx, len(split.domains))
    return out


def systems(base, experts, multitask, data, cache, seed, routing: LMRouting) -> dict:
    """Every system's held-out figures for one seed, from cached tensors where they can be
    (every expert and the base score every eval text once)."""
    names = [e.name for e in experts]
    domains = list(data)
    results, composed = {}, {}
    for router in ("centroid", "prefix-likelihood", "learned"):
        for variant, loss, k, mixing in (
            gate_variants()
            if router == "learned"
            else [(f"{router} router top-1", DEFAULT, 1, "mix")]
        ):
            log(f"seed {seed}: {variant}")
            r = LMRouting(routing.prefix_tokens, routing.layer, router, mixing)
            composed[variant] = compose(
                base,
                experts,
                domains,
                data,
                cache=cache,
                routing=r,
                gate_config=GateConfig(top_k=k),
                train_config=TrainConfig(seed=seed, loss=loss),
            )
    split = composed["learned top-1"].eval_split
    n, width = len(split.domain_idx), split.base_lp.shape[1]
    texts = [t for d in domains for t in data[d].eval.texts]
    one_hot = split.domain_experts.float()  # (n, N): each text's own domain's expert
    results["base model"] = score(split.base_lp, split)
    mt = token_log_probs(multitask, base, texts, cache, routing.prefix_tokens)
    results["multitask LoRA (same budget)"] = score(mt, split)
    results["oracle routing"] = score(mixture_log_probs(one_hot, split.token_lp), split, one_hot)
    # the best single expert for everything, chosen on the router texts (never on eval)
    router = cached_split(experts, domains, data, "router", base, cache, routing)
    best = min(range(len(experts)), key=lambda k: perplexity(router.token_lp[:, k]))
    single = torch.zeros(n, len(experts))
    single[:, best] = 1.0
    results[f"best single expert ({names[best]})"] = score(
        mixture_log_probs(single, split.token_lp), split, single
    )
    uniform = torch.full((n, len(experts)), 1.0 / len(experts))
    results["uniform ensemble"] = score(mixture_log_probs(uniform, split.token_lp), split, uniform)
    log(f"seed {seed}: uniform merge of the adapters")
    names_in_bank = [e.attach(base) for e in experts]
    merged = base.token_log_probs(
        texts, prefix_tokens=routing.prefix_tokens, merged=(names_in_bank, uniform)
    )
    results["uniform merge"] = score(merged, split, uniform)
    for variant, result in composed.items():
        model: MoECausalLM = result.model
        weights = model.cached_weights(result.eval_split)
        if model.routing.mixing == "merge" and model.top_k > 1:
            lp = base.token_log_probs(
                texts, prefix_tokens=routing.prefix_tokens, merged=(model.names, weights)
            )
        else:
            lp = mixture_log_probs(weights, result.eval_split.token_lp)
        results[variant] = score(lp, split, weights)
        if variant == "learned top-1":
            results[variant]["gate_seconds"] = model.info.get("gate_seconds")
    assert split.token_lp.shape == (n, len(experts), width)
    return results, composed["learned top-1"]


def _composition_forward(model: MoECausalLM, prompts, batch) -> None:
    """What a prefill costs the composition: the router's prefix pass, then only the
    selected experts' adapted passes (or one merged pass)."""
    weights = model.route(prompts)
    bank = model.base.bank
    if model.routing.mixing == "merge" or int((weights > 0).sum(-1).max()) == 1:
        with bank.mixed(model.names, weights):  # top-1 or merged: one pass
            model.base.model(**batch)
        return
    for k, name in enumerate(model.names):
        rows = weights[:, k].nonzero().squeeze(1)
        if rows.numel():
            with bank.only(name, len(rows)):
                model.base.model(**{key: v[rows] for key, v in batch.items()})


def timings(base, model: MoECausalLM, expert, texts, prompts, new_tokens, repeats=3) -> dict:
    """Prefill and generation tokens/s of the base, the base carrying one PEFT adapter, and
    the composition routed top-1, top-2 mixed and top-2 merged, in one run: prefill on
    the same held-out texts (up to 128 tokens), generation from the same prompts."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    lora = expert.header.lora
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        target_modules=list(lora.target_modules),
    )
    peft = get_peft_model(base.fresh_model(), config).eval()
    state = {f"base_model.model.{k}": v for k, v in expert.lora_tensors.items()}
    set_peft_model_state_dict(peft, state)
    batch = base.tokenize(texts)
    tokens = int(batch["attention_mask"].sum())
    prompt_batch = base.tokenize(prompts)
    generated = len(prompts) * new_tokens
    options = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": base.tokenizer.pad_token_id,
    }

    def rates(prefill, generate) -> dict:
        return {
            "prefill": tokens / timed(prefill, repeats),
            "generate": generated / timed(generate, repeats),
        }

    out = {}
    with torch.inference_mode():
        with base.bank.off():
            out["base model"] = rates(
                lambda: base.model(**batch),
                lambda: base.model.generate(**prompt_batch, **options),
            )
        out["base + one PEFT adapter"] = rates(
            lambda: peft(**batch), lambda: peft.generate(**prompt_batch, **options)
        )
        for label, k, mixing in (
            ("composition top-1", 1, "mix"),
            ("composition top-2 mixed", 2, "mix"),
            ("composition top-2 merged", 2, "merge"),
        ):
            model.top_k, model.routing.mixing = k, mixing
            out[label] = rates(
                lambda: _composition_forward(model, texts, batch),
                lambda: model.generate(
                    prompts, max_new_tokens=new_tokens, min_new_tokens=new_tokens
                ),
            )
        model.top_k, model.routing.mixing = 1, "mix"
    for measured in out.values():
        measured["prefill_ratio"] = measured["prefill"] / out["base model"]["prefill"]
        measured["generate_ratio"] = measured["generate"] / out["base model"]["generate"]
    return out


def timed(fn, repeats: int = 3) -> float:
    """The median time of `repeats` runs after a warm-up."""
    fn()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return sorted(runs)[len(runs) // 2]


def gate_retrain_seconds(experts=8, sequences=5000, hidden=576, width=96) -> float:
    """Training a gate from cached tensors only: 8 experts, 5,000 router sequences (the
    median of three runs, as a long-running worker retrains)."""
    from routing.gate_training import fit_gate

    torch.manual_seed(0)
    domain = torch.arange(sequences) % experts
    features = torch.randn(sequences, hidden) + 2 * torch.nn.functional.one_hot(domain, hidden)
    token_lp = -3 - torch.rand(sequences, experts, width)
    token_lp[torch.arange(sequences), domain] += 1.0  # each domain's expert is better on it
    domain_experts = torch.nn.functional.one_hot(domain, experts).bool()
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        fit_gate(
            features,
            domain_experts,
            token_task(token_lp),
            gate_config=GateConfig(top_k=1),
            domain_idx=domain,
        )
        runs.append(time.perf_counter() - started)
    return sorted(runs)[1]
