"""The language-model benchmark: four contributors' LoRA experts of SmolLM2-135M-Instruct,
composed every way users compare, against the base and a multitask LoRA of the same budget.

Writes docs/results-lm.md, docs/results-lm.json and two plots (see the report for the
reading). Everything expensive is cached (the base's features and log-probabilities,
each expert's log-probabilities), so the routers and ablations cost seconds.

    .venv/bin/python bench/lm.py            # full run: 3 seeds, about 50 min on 2 CPU cores
    .venv/bin/python bench/lm.py --quick    # 1 seed, small subsets: about 4 min
    .venv/bin/python bench/lm.py --device cuda --train 200 --eval 100   # with a GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from bench.lm_report import aggregate, targets, write_report  # noqa: E402
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, small subsets")
    parser.add_argument("--limit", type=int, help="at most this many texts per split")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--train", type=int, help="training texts per expert (default: profile)")
    parser.add_argument("--eval", type=int, help="router and held-out texts per domain")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--base", help="the base causal LM, a Hub id or a folder "
                        "(default: SmolLM2-135M-Instruct from its PyPI package)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, help="tensor cache (default: a new folder)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (the median counts)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    profile = dict(PROFILES["quick" if args.quick else "full"])
    profile["train"] = args.train or profile["train"]
    profile["router"] = profile["eval"] = args.eval or profile["eval"]
    seeds = args.seeds or profile["seeds"]
    folder = Path(tempfile.mkdtemp(prefix="moecollab-lm-bench-"))
    cache = TensorCache(args.cache or folder / "cache")
    base = (
        CausalBase(args.base, device=args.device) if args.base else CausalBase(device=args.device)
    )
    routing = LMRouting()
    log(f"base {base.name} on {base.device}; {seeds} seed(s); sizes {profile}")
    per_seed, timing, generations, matrix = [], None, [], None
    for seed in range(seeds):
        data = domains_for(profile, seed, args.limit)
        experts, expert_seconds = train_experts(base, data, seed, folder)
        multitask, multitask_seconds = train_multitask(base, data, seed, folder)
        results, learned = systems(base, experts, multitask, data, cache, seed, routing)
        per_seed.append(
            {
                "systems": results,
                "expert_seconds": expert_seconds,
                "multitask_seconds": multitask_seconds,
            }
        )
        if seed == 0:
            matrix = results["learned top-1"]["routing_matrix"]
            prompts = [
                base.tokenizer.decode(base.tokenize([d.eval.texts[i]], 32)["input_ids"][0])
                for d in data.values()
                for i in range(profile["prompts"] // 4 or 1)
            ]
            log("timing prefill and generation")
            texts = [t for d in data.values() for t in d.eval.texts[: profile["prompts"] // 4 or 1]]
            timing = timings(
                base, learned.model, experts[0], texts, prompts, profile["new_tokens"], args.repeats
            )
            for g in learned.model.generate(
                prompts[:: max(1, len(prompts) // 4)], max_new_tokens=24
            ):
                generations.append({"prompt": g.prompt, "text": g.text, "experts": g.experts})
    log("gate retraining from cache: 8 experts, 5,000 sequences")
    gate_seconds = gate_retrain_seconds(hidden=base.hidden_size)
    summary = aggregate(per_seed)
    expert_seconds = sum(sum(s["expert_seconds"]) for s in per_seed) / (4 * len(per_seed))
    trained_on = min(args.limit or profile["train"], profile["train"])
    per_text = expert_seconds / trained_on  # scaled to a contributor's 200 texts below
    results = {
        "meta": {
            "command": "python bench/lm.py"
            + (" --quick" if args.quick else "")
            + (f" --limit {args.limit}" if args.limit else "")
            + (f" --seeds {args.seeds}" if args.seeds else "")
            + (f" --train {args.train}" if args.train else "")
            + (f" --eval {args.eval}" if args.eval else "")
            + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
            + (f" --device {args.device}" if args.device != "cpu" else "")
            + (f" --base {args.base}" if args.base else ""),
            "quick": args.quick,
            "seeds": seeds,
            "base": base.name,
            "rank": LORA_R,
            "train": profile["train"] if not args.limit else args.limit,
            "eval": profile["eval"] if not args.limit else args.limit,
            "prefix_tokens": routing.prefix_tokens,
            "device": str(base.device),
            "machine": f"{platform.machine()}, {args.threads} threads, {args.device}",
            "seconds": time.perf_counter() - started,
        },
        "summary": summary,
        "per_seed": per_seed,
        "timing": timing,
        "flops": flops_table(base.spec, base.model.config.vocab_size, routing, 4),
        "gate_seconds": gate_seconds,
        "training": {
            "expert_seconds": expert_seconds,
            "multitask_seconds": sum(s["multitask_seconds"] for s in per_seed) / len(per_seed),
        },
        "routing_matrix": matrix,
        "generations": generations,
        "reading": READING,
    }
    results["targets"] = targets(summary, timing, gate_seconds, per_text * 200, trained_on)
    results["meta"]["seconds"] = time.perf_counter() - started
    write_report(results, args.out)
    for system, entry in summary.items():
        mean, std = entry["overall"]
        print(f"{system:40s} overall perplexity {mean:8.3f} ± {std:.3f}")
    for target, measured, met in results["targets"]:
        print(f"{'met' if met else 'MISSED':6s} {target}: {measured}")
    log(f"done in {results['meta']['seconds'] / 60:.1f} min; wrote {args.out / 'results-lm.md'}")
    return results


if __name__ == "__main__":
    main()
