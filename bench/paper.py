"""Reproduce the paper's kinds of claims on real data: the multi-domain benchmark.

Four domains, each owned by a simulated contributor who trains an expert on
its own domain only: BBC News, Reuters R8, 20 Newsgroups, Rotten Tomatoes.
Every system is scored on the same held-out splits in the union label space,
over several seeds; see docs/results.md for the output and its reading.

    .venv/bin/python bench/paper.py            # full run, writes docs/results.*
    .venv/bin/python bench/paper.py --quick    # minutes, small subsets
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

from bench.paper_systems import (  # noqa: E402
    HEAD_EPOCHS,
    LORA_R,
    PROFILES,
    expert_flops,
    gate_variants,
    limited_domains,
    log,
    measure_times,
    token_counts,
    train_experts,
    train_monolithic,
)
from routing.cache import TensorCache  # noqa: E402
from routing.config import GateConfig, TrainConfig, to_dict  # noqa: E402
from routing.kinds.classification.composing import (  # noqa: E402
    cached_split,
    compose,
    expert_log_probs,
)
from routing.kinds.classification.encoder import BaseEncoder  # noqa: E402
from routing.kinds.classification.flops import encoder_flops, lora_extra_flops, mlp_flops  # noqa: E402
from routing.kinds.classification.model import MoEClassifier, union_labels  # noqa: E402
from routing.kinds.classification.scoring import evaluate_predictions  # noqa: E402
from routing.losses import mixture_probs  # noqa: E402


def run_kind(kind, profile, encoder, cache, limit, folder) -> dict:
    sizes = profile[kind]
    data = limited_domains(sizes, limit)
    names = list(data)
    log(
        f"{kind}: sizes "
        + ", ".join(f"{n} {len(d.train)}/{len(d.router)}/{len(d.eval)}" for n, d in data.items())
    )
    # Contributors embed their own data once (cached for every later seed and run).
    embed_seconds = {}
    for name, d in data.items():
        t0 = time.perf_counter()
        for split in (d.train, d.router, d.eval):
            cache.features(encoder, split.texts, progress=f"{name} features")
        embed_seconds[name] = time.perf_counter() - t0
    spec = encoder.spec
    eval_texts = [t for d in data.values() for t in d.eval.texts]
    eval_tokens = token_counts(encoder, eval_texts)
    base_flops = torch.tensor(
        [encoder_flops(spec, int(t)) for t in eval_tokens], dtype=torch.float64
    )
    train_tokens = {n: token_counts(encoder, d.train.texts) for n, d in data.items()}
    seeds = []
    for seed in range(sizes["seeds"]):
        log(f"{kind}: seed {seed}: training the experts")
        experts, expert_seconds = train_experts(
            kind, encoder, data, cache, folder, seed, sizes.get("epochs", 1)
        )
        labels = union_labels([e.labels for e in experts])
        budget = sum(e.header.num_parameters for e in experts)
        log(f"{kind}: seed {seed}: training the monolithic baseline")
        mono, mono_seconds, mono_shape = train_monolithic(
            kind, encoder, data, labels, cache, folder, seed, sizes.get("epochs", 1), budget
        )
        log(f"{kind}: seed {seed}: expert outputs and gates")
        ev = cached_split(experts, names, data, "eval", encoder, cache)
        n = len(experts)

        def score(probs, weights, ev=ev):
            return evaluate_predictions(
                probs, weights, ev.targets, ev.domain_idx, ev.domains, ev.domain_labels
            )

        systems, gates = {}, {}
        if kind == "head":  # the eval features are already cached per domain
            with torch.inference_mode():
                mono_lp = torch.log_softmax(mono.head(ev.features), -1)
        else:
            mono_lp = expert_log_probs(mono, encoder, eval_texts, cache)
        mono_report = score(mono_lp.exp(), torch.ones(len(eval_texts), 1))
        mono_report.pop("utilisation")
        mono_report.pop("routing_matrix")
        systems["monolithic"] = mono_report
        oracle_w = torch.nn.functional.one_hot(ev.domain_idx, n).float()
        systems["oracle"] = score(mixture_probs(oracle_w, ev.expert_probs), oracle_w)
        uniform_w = torch.full((len(eval_texts), n), 1.0 / n)
        systems["uniform"] = score(mixture_probs(uniform_w, ev.expert_probs), uniform_w)
        gate_seconds = {}
        trained: dict[str, MoEClassifier] = {}
        for name, weights, k, options in gate_variants(n):
            key = json.dumps([weights.__dict__, to_dict(options)], sort_keys=True)
            if key not in trained:  # the hub's own composing, top-k chosen when mixing
                composed = compose(
                    encoder, experts, names, data, cache=cache,
                    gate_config=GateConfig(top_k=2),
                    train_config=TrainConfig(seed=seed, loss=weights),
                    routing=options,
                )  # fmt: skip
                trained[key] = composed.model
                gate_seconds[name] = composed.model.info["gate_seconds"]
            model = trained[key]
            split = cached_split(experts, names, data, "eval", encoder, cache,
                                 gate_features=model.gate_features)  # fmt: skip
            probs, w = model.mix_cached(split.gate_features, split.expert_probs, top_k=k)
            systems[name] = score(probs, w)
            gates[name] = (model, k, w)

        # Counted FLOPs per example, averaged over the eval examples.
        per_expert = torch.stack(
            [expert_flops(kind, encoder, e, eval_tokens) for e in experts], dim=1
        )  # (n_eval, N)
        flops = {}
        for name, (model, _, w) in gates.items():
            gate = model.gate
            gate_cost = mlp_flops([gate.in_dim + gate.side_dim, GateConfig().hidden, n])
            # a gate that reads its (head) experts runs every head before it routes
            ran = torch.ones_like(w) if model.reads_experts else (w > 0).float()
            flops[name] = float((base_flops + gate_cost + (ran * per_expert).sum(1)).mean())
        if kind == "head":
            flops["uniform"] = float((base_flops + per_expert.sum(1)).mean())
            flops["oracle"] = float((base_flops + (oracle_w * per_expert).sum(1)).mean())
        else:  # no gate, so no separate base pass
            flops["uniform"] = float(per_expert.sum(1).mean())
            flops["oracle"] = float((oracle_w * per_expert).sum(1).mean())
        mono_flops = expert_flops(kind, encoder, mono, eval_tokens)
        flops["monolithic"] = float((mono_flops + (base_flops if kind == "head" else 0)).mean())

        # Training cost per contributor against the central model.
        def embed_flops(name):
            return float(sum(encoder_flops(spec, int(t)) for t in train_tokens[name]))

        train_cost = {}
        epochs = HEAD_EPOCHS if kind == "head" else sizes.get("epochs", 1)
        for e, name in zip(experts, names, strict=True):
            examples = len(data[name].train)
            if kind == "head":
                fl = embed_flops(name) + 6 * e.header.num_parameters * examples * epochs
            else:
                lora_fl = sum(
                    lora_extra_flops(spec, LORA_R, list(e.header.lora.modules), int(t))
                    for t in train_tokens[name]
                )
                fl = 3 * (embed_flops(name) + lora_fl) * epochs
            train_cost[name] = {
                "examples": examples,
                "seconds": expert_seconds[name],
                "flops": fl,
                "parameters": e.header.num_parameters,
            }
        all_examples = sum(len(d.train) for d in data.values())
        if kind == "head":
            mono_fl = sum(embed_flops(n_) for n_ in names) + (
                6 * mono.header.num_parameters * all_examples * epochs
            )
        else:
            mono_fl = sum(
                3
                * (
                    embed_flops(n_)
                    + sum(
                        lora_extra_flops(
                            spec, mono.header.lora.r, list(mono.header.lora.modules), int(t)
                        )
                        for t in train_tokens[n_]
                    )
                )
                * epochs
                for n_ in names
            )
        train_cost["monolithic"] = {
            "examples": all_examples,
            "seconds": mono_seconds,
            "flops": mono_fl,
            "parameters": mono.header.num_parameters,
            **mono_shape,
        }

        timing = (
            measure_times(encoder, experts, names, gates, mono, data, profile)
            if (seed == 0)
            else {}
        )
        alone = {}
        for k_, name in enumerate(names):
            m = ev.domain_idx == k_
            pred = ev.expert_probs[m, k_].argmax(-1)
            alone[name] = float((pred == ev.targets[m]).float().mean())
        seeds.append(
            {
                "seed": seed,
                "systems": systems,
                "flops": flops,
                "time_per_example": timing,
                "train_cost": train_cost,
                "gate_seconds": gate_seconds,
                "expert_alone": alone,
                "expert_names": names,
                "mono_shape": mono_shape,
            }
        )
    return {
        "kind": kind,
        "sizes": {
            n: {"train": len(d.train), "router": len(d.router), "eval": len(d.eval)}
            for n, d in data.items()
        },
        "embed_seconds": embed_seconds,
        "eval_tokens_mean": float(eval_tokens.mean()),
        "seeds": seeds,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small subsets, a few minutes")
    parser.add_argument("--limit", type=int, help="cap every split at this many examples")
    parser.add_argument("--kinds", default="head,lora")
    parser.add_argument("--seeds", type=int, help="seeds of every kind (default: the profile's)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    parser.add_argument("--cache", default=None, help="feature cache (default: shared cache)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--timing-texts", type=int, help="texts timed per system (default: 128, quick 32)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite results.md and the plots from results.json",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        from bench.paper_report import write_report

        results = json.loads((args.out / "results.json").read_text())
        write_report(results, args.out)
        return results
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = dict(PROFILES["quick" if args.quick else "full"])
    if args.seeds:
        profile = {k: {**v, "seeds": args.seeds} if isinstance(v, dict) else v
                   for k, v in profile.items()}  # fmt: skip
    if args.timing_texts:
        profile["timing_texts"] = args.timing_texts
    started = time.perf_counter()
    encoder = BaseEncoder(device=args.device)
    cache = TensorCache(args.cache)
    results = {
        "command": "python bench/paper.py"
        + (" --quick" if args.quick else "")
        + (f" --limit {args.limit}" if args.limit else "")
        + (f" --seeds {args.seeds}" if args.seeds else ""),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "device": str(encoder.device),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "base_model": encoder.name,
        "max_length": encoder.max_length,
        "profile": "quick" if args.quick else "full",
        "kinds": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            results["kinds"][kind] = run_kind(kind, profile, encoder, cache, args.limit, Path(tmp))
    results["seconds"] = time.perf_counter() - started
    from bench.paper_report import write_report

    write_report(results, args.out)
    log(f"done in {results['seconds']:.0f} s; wrote {args.out / 'results.md'}")
    return results


if __name__ == "__main__":
    main()
