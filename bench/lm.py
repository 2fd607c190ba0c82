"""The language-model benchmark: four contributors' LoRA experts of SmolLM2-135M-Instruct,
composed every way users compare, against the base and single models trained centrally.

Four families of systems, each runnable alone (`--families`), so that a full run splits
into runs of under an hour on 2 cores, one seed and data size each (`--seed`, `--train`,
`--part DIR` writes the run's figures), merged into the report afterwards (`--merge DIR`):
- `present`: attention LoRA experts on the plain base, every router and way of mixing,
  the multitask LoRA of the experts' budget (the first systems, kept as they were);
- `anchored`: an anchor on public text, MLP experts on the base with it merged, composed
  per sequence and per token (untuned and tuned), timings and the cost of a new expert;
- `coordinated`: the same experts trained beside the shared expert (FlexOlmo's step);
- `multitask`: the fair single model, with the anchor's and experts' total training steps
  and trainable parameters, on every text any of them saw (its learning rate searched on
  the router texts, `--multitask-lr`; a search may be spread over a seed's runs);
  `--expert-lr` searches the experts' rate the same way, each contributor on its own texts.
- `timing`: only the per-token composition's speed against the base (the anchored experts
  trained, router rows from domain embeddings, prefill and generation timed, FLOPs
  counted): a later run of it replaces an earlier run's timings at that size.
Writes docs/results-lm.md, docs/results-lm.json and plots.

    .venv/bin/python bench/lm.py --quick    # every family, 1 seed, small subsets
    .venv/bin/python bench/lm.py --train 64 --seed 0 --families anchored,coordinated \
        --part docs/lm-runs                 # one run of a full benchmark
    .venv/bin/python bench/lm.py --merge docs/lm-runs   # the report from every run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from bench import lm_anchored as anchored  # noqa: E402
from bench.lm_report import merge_runs, write_report  # noqa: E402
from bench.lm_systems import (  # noqa: E402
    LORA_R,
    PROFILES,
    domains_for,
    gate_retrain_seconds,
    log,
    systems,
    timings,
    train_experts,
    train_multitask,
)
from routing.cache import TensorCache  # noqa: E402
from routing.config import LMRouting  # noqa: E402
from routing.kinds.causal_lm.base import CausalBase  # noqa: E402
from routing.kinds.causal_lm.flops import lora_flops, router_flops, token_flops  # noqa: E402

READING = """
The router reads only each text's first 32 tokens and is scored on the rest, as in
Branch-Train-Merge. Oracle routing is each text's own domain's expert; the learned router's
gap to it is the price of routing from a prefix. The uniform ensemble and merge show what
routing buys over using every expert for everything; the multitask LoRA is the monolithic
model trained centrally on all domains with the experts' total parameter budget. Timings
are ratios within one run on the same prompts, so machine load cancels out.
"""


def flops_table(spec, vocab, routing: LMRouting, experts: int, gate_hidden: int = 128) -> dict:
    tokens, modules = (
        128,
        [
            f"model.layers.{i}.self_attn.{m}"
            for i in range(spec.num_layers)
            for m in ("q_proj", "v_proj")
        ],
    )
    base = token_flops(spec, vocab, tokens)
    lora = lora_flops(spec, LORA_R, modules)
    route = router_flops(spec, routing.prefix_tokens, tokens, gate_hidden, experts)
    btm = experts * router_flops(spec, routing.prefix_tokens, tokens, 0, 0)
    return {
        "base model": base,
        "base + one adapter": base + lora,
        "multitask LoRA (same budget)": base + lora_flops(spec, LORA_R * experts, modules),
        "learned top-1": route + base + lora,
        "learned top-2 mixed": route + 2 * (base + lora),
        "learned top-2 merged": route + base + 2 * lora,
        "centroid router top-1": route + base + lora,
        "prefix-likelihood router top-1": btm + base + lora,
        "uniform ensemble": experts * (base + lora),
        "uniform merge": base + experts * lora,
    }


FAMILIES = ("present", "anchored", "coordinated", "multitask")
OPTIONAL = ("timing",)  # not part of a full run


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, small subsets")
    parser.add_argument("--limit", type=int, help="at most this many texts per split")
    parser.add_argument("--seeds", type=int, help="run seeds 0..N-1 (default: the profile's)")
    parser.add_argument("--seed", type=int, help="run this seed only")
    parser.add_argument("--train", type=int, help="training texts per expert (default: profile)")
    parser.add_argument("--eval", type=int, help="router and held-out texts per domain")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"of {', '.join(FAMILIES + OPTIONAL)}")  # fmt: skip
    parser.add_argument(
        "--multitask-lr",
        help="the fair multitask LoRA's learning rate, or rates to search, comma-separated "
        "(default: searched among 5e-4, 1e-3, 2e-3)",
    )
    parser.add_argument("--expert-lr", help="the anchored and coordinated experts' learning "
                        "rate, or rates each contributor searches on its router texts "
                        "(default: 2e-3)")  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--base", help="the base causal LM, a Hub id or a folder "
                        "(default: SmolLM2-135M-Instruct from its PyPI package)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="tensor cache (default: a new folder)")
    parser.add_argument("--work", type=Path, help="trained files (default: a new folder)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the median counts)")
    parser.add_argument("--part", type=Path, help="write this run's figures into DIR, no report")
    parser.add_argument("--merge", type=Path, help="write the report from the runs in DIR")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args(argv)
    if args.merge:
        results = merge_runs(sorted(args.merge.glob("*.json")))
        write_report(results, args.out)
        return results
    torch.set_num_threads(args.threads)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    profile = dict(PROFILES["quick" if args.quick else "full"])
    profile["train"] = args.train or profile["train"]
    profile["router"] = profile["eval"] = args.eval or profile["eval"]
    seeds = [args.seed] if args.seed is not None else list(range(args.seeds or profile["seeds"]))
    work = args.work or Path(tempfile.mkdtemp(prefix="moecollab-lm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = TensorCache(args.cache or work / "cache")
    base = CausalBase(args.base, device=args.device) if args.base else (
        CausalBase(device=args.device)
    )  # fmt: skip
    log(f"base {base.name} on {base.device}; seeds {seeds}; families {families}; sizes {profile}")
    runs = [run_seed(args, base, seed, families, profile, work, cache) for seed in seeds]
    if args.part:
        args.part.mkdir(parents=True, exist_ok=True)
        for run in runs:
            name = f"train{run['meta']['train']}-seed{run['seed']}-{'+'.join(families)}.json"
            (args.part / name).write_text(json.dumps(run, indent=1, default=str) + "\n")
            log(f"wrote {args.part / name}")
        return {"runs": runs}
    results = merge_runs(runs)
    write_report(results, args.out)
    for size, entry in results["sizes"].items():
        for system, figures in entry["summary"].items():
            mean, std = figures["overall"]
            print(f"{size:>5} texts  {system:44s} overall perplexity {mean:8.3f} ± {std:.3f}")
    for target, measured, met in results["targets"]:
        print(f"{'met' if met else 'MISSED':6s} {target}: {measured}")
    return results


def run_seed(args, base, seed, families, profile, work, cache) -> dict:
    """One seed of the chosen families at one data size: its systems' figures and, for
    seed 0, the timings and what the report draws."""
    started = time.perf_counter()
    data = domains_for(profile, seed, args.limit)
    train = len(next(iter(data.values())).train)
    routing = LMRouting()
    systems_, extras, cost = {}, {}, {}
    if "present" in families:
        experts, expert_seconds = train_experts(base, data, seed, work)
        multitask, multitask_seconds = train_multitask(base, data, seed, work)
        results, learned = systems(base, experts, multitask, data, cache, seed, routing)
        systems_.update(results)
        cost.update(expert_seconds=expert_seconds, multitask_seconds=multitask_seconds)
        if seed == 0:
            extras.update(present_extras(args, base, profile, data, experts, learned, results))
    if {"anchored", "coordinated", "multitask", "timing"} & set(families):
        sizes = anchor_sizes(args, profile)
        public = anchored.public_data(seed, sizes["anchor"], sizes["router"])
        if {"anchored", "coordinated", "timing"} & set(families):  # the single model: no anchor
            anchor_path, anchor_seconds = anchored.train_anchor(base, public, seed, work)
            if anchor_seconds is not None:  # a reused anchor's time is its first run's
                cost["anchor_seconds"] = anchor_seconds
        if "timing" in families:
            extras.update(timing_family(args, base, anchor_path, data, seed, work, cache, profile))
        if {"anchored", "coordinated"} & set(families):
            extras.update(anchored_family(args, base, anchor_path, data, families, seed, work,
                                          cache, profile, systems_, cost))  # fmt: skip
        if "multitask" in families:
            figures, seconds, search = anchored.fair_multitask_system(
                base, data, public, seed, work, rates(args.multitask_lr), cache
            )
            systems_["fair multitask LoRA"] = figures
            cost["fair_multitask_seconds"] = seconds
            extras["fair_multitask"] = search
    return {
        "seed": seed,
        "families": families,
        "systems": systems_,
        "cost": cost,
        "extras": extras,
        "meta": run_meta(args, base, profile, train, time.perf_counter() - started),
    }


def rates(given: str | None) -> list[float] | None:
    return [float(x) for x in given.split(",")] if given else None


def anchor_sizes(args, profile) -> dict:
    if args.quick:
        return {"anchor": 4 * profile["train"], "router": profile["router"]}
    return {"anchor": anchored.ANCHOR["texts"], "router": 64}


def anchored_family(args, base, anchor_path, data, families, seed, work, cache, profile,
                    systems_: dict, cost: dict) -> dict:  # fmt: skip
    """The anchored and coordinated systems of one seed (into `systems_`, `cost`)."""
    abase = CausalBase(base.name if not args.base else args.base, device=args.device,
                       max_tokens=base.max_tokens, anchor=anchor_path)  # fmt: skip
    trained, extras_rates = {}, {}
    for family, coordinated in (("anchored", False), ("coordinated", True)):
        if family in families:
            experts, seconds, search = anchored.train_anchored(
                abase, data, seed, work, coordinated=coordinated, lrs=rates(args.expert_lr),
                cache=cache,
            )  # fmt: skip
            trained[family] = experts
            cost[f"{family}_expert_seconds"] = seconds
            if search:
                extras_rates[family] = search
    results, models = anchored.anchored_systems(abase, trained, data, cache, seed)
    systems_.update(results)
    extras = {"expert_rates": extras_rates} if extras_rates else {}
    if seed != 0:
        return extras
    key = "anchored experts, token top-2" if "anchored" in trained else (
        "coordinated experts, token top-2"
    )  # fmt: skip
    model = models[key]
    timing, prompts = token_speed(args, base, model, data, profile)
    extras.update(timing)
    extras["layer_routing"] = {"names": model.names, "domains": list(data),
                               "by_layer": [model.token_routing(data[d].eval.texts).tolist()
                                            for d in data]}  # fmt: skip
    extras["token_generations"] = [
        {"prompt": g.prompt, "text": g.text, "experts": g.experts, "tokens": g.tokens}
        for g in model.generate(prompts[:: max(1, len(prompts) // 4)], max_new_tokens=24)
    ]
    if len(trained) == 2:
        log("adding an 8th expert to a per-token composition of 7")
        experts = trained["anchored"] + trained["coordinated"]
        extras["add_expert"] = anchored.add_expert_seconds(abase, experts, data, cache, seed)
    return extras


def timing_family(args, base, anchor_path, data, seed, work, cache, profile) -> dict:
    """The per-token composition of the anchored experts (top-2, router rows from domain
    embeddings) timed against the base, and its FLOPs counted."""
    from routing.kinds.causal_lm.token_composing import token_routers
    from routing.kinds.causal_lm.token_model import TokenMoECausalLM

    abase = CausalBase(base.name if not args.base else args.base, device=args.device,
                       max_tokens=base.max_tokens, anchor=anchor_path)  # fmt: skip
    experts, _, _ = anchored.train_anchored(abase, data, seed, work, coordinated=False,
                                            lrs=rates(args.expert_lr), cache=cache)  # fmt: skip
    domains = list(data)
    routers, _ = token_routers(abase, experts, domains, data, cache=cache,
                               routing=LMRouting(granularity="token"))  # fmt: skip
    model = TokenMoECausalLM(abase, experts, domains, routers=routers, top_k=2)
    return token_speed(args, base, model, data, profile)[0]


def token_speed(args, base, model, data, profile) -> tuple[dict, list[str]]:
    """A per-token composition's prefill and generation timed against the base on a few
    held-out texts and their prompts, and its FLOPs counted; and the prompts."""
    per = max(1, profile["prompts"] // 4)
    texts = [t for d in data.values() for t in d.eval.texts[:per]]
    prompts = [base.tokenizer.decode(base.tokenize([t], 32)["input_ids"][0]) for t in texts]
    log("timing the per-token composition against the base")
    timing = anchored.token_timings(base, model, texts, prompts, profile["new_tokens"],
                                    args.repeats)  # fmt: skip
    flops = anchored.token_flops(base.spec, base.model.config.vocab_size, len(model.names))
    return {"token_timing": timing, "token_flops": flops}, prompts


def present_extras(args, base, profile, data, experts, learned, results) -> dict:
    prompts = [
        base.tokenizer.decode(base.tokenize([d.eval.texts[i]], 32)["input_ids"][0])
        for d in data.values()
        for i in range(profile["prompts"] // 4 or 1)
    ]
    log("timing prefill and generation")
    texts = [t for d in data.values() for t in d.eval.texts[: profile["prompts"] // 4 or 1]]
    out = {
        "timing": timings(
            base, learned.model, experts[0], texts, prompts, profile["new_tokens"], args.repeats
        ),  # fmt: skip
        "routing_matrix": results["learned top-1"]["routing_matrix"],
        "generations": [
            {"prompt": g.prompt, "text": g.text, "experts": g.experts}
            for g in learned.model.generate(
                prompts[:: max(1, len(prompts) // 4)], max_new_tokens=24
            )  # fmt: skip
        ],
        "flops": flops_table(base.spec, base.model.config.vocab_size, LMRouting(), 4),
    }
    log("gate retraining from cache: 8 experts, 5,000 sequences")
    out["gate_seconds"] = gate_retrain_seconds(hidden=base.hidden_size)
    return out


def run_meta(args, base, profile, train, seconds) -> dict:
    command = "python bench/lm.py" + (" --quick" if args.quick else "")
    families = args.families if args.families != ",".join(FAMILIES) else None
    for flag, value in (("--limit", args.limit), ("--train", args.train), ("--eval", args.eval),
                        ("--seed", args.seed), ("--seeds", args.seeds), ("--families", families),
                        ("--repeats", args.repeats if args.repeats != 3 else None),
                        ("--multitask-lr", args.multitask_lr), ("--expert-lr", args.expert_lr),
                        ("--base", args.base)):  # fmt: skip
        if value is not None:
            command += f" {flag} {value}"
    return {
        "command": command,
        "quick": args.quick,
        "base": base.name,
        "rank": LORA_R,
        "train": train,
        "eval": profile["eval"] if not args.limit else min(args.limit, profile["eval"]),
        "prefix_tokens": LMRouting().prefix_tokens,
        "device": str(base.device),
        "machine": f"{platform.machine()}, {args.threads} threads, {args.device}",
        "seconds": seconds,
    }


if __name__ == "__main__":
    main()
