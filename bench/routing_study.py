"""Can the gate beat the monolithic model? Routing variants for `head` experts, measured
on the multi-domain benchmark's data, splits, experts and baseline (bench/paper.py's
`full` profile), over seeds. Every variant trains only on the router split.

- `gate`: the hub's gate today (top-2, mean-pooled features).
- `balanced`: router examples drawn with equal weight per domain.
- `reads experts`: the gate also reads what each expert says about the input: its top
  probability and its normalised entropy (free for `head` experts, whose outputs come
  from the shared features).
- `calibrated`: each expert's temperature fitted on the router split before mixing.
- combinations of those, and a wider gate.

    .venv/bin/python bench/routing_study.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from bench.paper_systems import (  # noqa: E402
    PROFILES,
    limited_domains,
    log,
    train_experts,
    train_monolithic,
)
from routing.cache import TensorCache  # noqa: E402
from routing.config import GateConfig, TrainConfig  # noqa: E402
from routing.gate import top_k_weights  # noqa: E402
from routing.gate_training import train_gate  # noqa: E402
from routing.kinds.classification.composing import cached_split  # noqa: E402
from routing.kinds.classification.encoder import BaseEncoder  # noqa: E402
from routing.kinds.classification.model import union_labels  # noqa: E402
from routing.kinds.classification.scoring import evaluate_predictions  # noqa: E402
from routing.losses import mixture_probs  # noqa: E402


def expert_stats(probs: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """(n, N, U) expert distributions -> (n, 2N): each expert's top probability and its
    entropy divided by log(its label count)."""
    top = probs.max(-1).values
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1) / sizes.log().clamp_min(1e-6)
    return torch.cat([top, entropy], dim=1)


def calibrate(router, masks) -> torch.Tensor:
    """Each expert's temperature: the grid value with the lowest NLL on its own domain's
    router examples."""
    grid = torch.tensor([0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0])
    temps = []
    for k, mask in enumerate(masks):
        rows = (router.domain_idx == k) & (router.targets >= 0)
        lp = router.expert_probs[rows, k].clamp_min(1e-12).log()
        target = router.targets[rows]
        nll = []
        for t in grid:
            scaled = torch.log_softmax((lp / t).masked_fill(~mask, -1e9), -1)
            nll.append(-scaled.gather(1, target[:, None]).mean())
        temps.append(float(grid[int(torch.stack(nll).argmin())]))
    return torch.tensor(temps)


def scaled(probs, temps, masks) -> torch.Tensor:
    lp = probs.clamp_min(1e-12).log() / temps[None, :, None]
    lp = lp.masked_fill(~torch.stack(masks)[None], -1e9)
    return torch.softmax(lp, -1) * torch.stack(masks)[None]


def run_seed(seed, data, names, encoder, cache, folder) -> dict:
    experts, _ = train_experts("head", encoder, data, cache, folder, seed, 1)
    labels = union_labels([e.labels for e in experts])
    index = {label: i for i, label in enumerate(labels)}
    budget = sum(e.header.num_parameters for e in experts)
    mono, _, _ = train_monolithic("head", encoder, data, labels, cache, folder, seed, 1, budget)
    router = cached_split(experts, names, data, "router", encoder, cache)
    ev = cached_split(experts, names, data, "eval", encoder, cache)
    n = len(experts)
    masks = [torch.zeros(len(labels), dtype=torch.bool) for _ in experts]
    for mask, e in zip(masks, experts, strict=True):
        mask[[index[x] for x in e.labels]] = True
    sizes = torch.tensor([float(len(e.labels)) for e in experts])

    def score(probs, weights):
        report = evaluate_predictions(
            probs, weights, ev.targets, ev.domain_idx, ev.domains, ev.domain_labels
        )
        bbc = names.index("bbc")
        routed = weights.shape[1] == n
        return {
            "accuracy": report["overall"]["accuracy"],
            "domains": {d: v["accuracy"] for d, v in report["domains"].items()},
            "bbc_kept": report["routing_matrix"][bbc][bbc] if routed else None,
        }

    systems = {}
    with torch.inference_mode():
        mono_p = torch.softmax(mono.head(ev.features), -1)
    systems["monolithic"] = score(mono_p, torch.ones(len(ev.targets), 1))
    oracle = torch.nn.functional.one_hot(ev.domain_idx, n).float()
    systems["oracle"] = score(mixture_probs(oracle, ev.expert_probs), oracle)

    temps = calibrate(router, masks)
    calibrated = {"router": scaled(router.expert_probs, temps, masks),
                  "eval": scaled(ev.expert_probs, temps, masks)}  # fmt: skip
    variants = {
        "gate": {},
        "balanced": {"balance": True},
        "reads experts": {"reads": True},
        "reads experts, balanced": {"reads": True, "balance": True},
        "calibrated": {"calibrated": True},
        "reads calibrated experts, balanced": {"reads": True, "balance": True, "calibrated": True},
        "wider gate (512), reads experts, balanced": {
            "reads": True,
            "balance": True,
            "hidden": 512,
        },  # fmt: skip
    }
    keep = router.targets >= 0
    for name, v in variants.items():
        r_probs = calibrated["router"] if v.get("calibrated") else router.expert_probs
        e_probs = calibrated["eval"] if v.get("calibrated") else ev.expert_probs
        r_in, e_in = router.features, ev.features
        if v.get("reads"):
            r_in = torch.cat([r_in, expert_stats(r_probs, sizes)], 1)
            e_in = torch.cat([e_in, expert_stats(e_probs, sizes)], 1)
        started = time.perf_counter()
        gate, _ = train_gate(
            r_in[keep], r_probs[keep], router.targets[keep], router.domain_experts[keep],
            gate_config=GateConfig(top_k=2, hidden=v.get("hidden", 128)),
            train_config=TrainConfig(seed=seed, balance_domains=v.get("balance", False)),
            domain_idx=router.domain_idx[keep],
        )  # fmt: skip
        seconds = time.perf_counter() - started
        with torch.inference_mode():
            w = top_k_weights(gate(e_in, top_k=n).probs, 2)
        systems[name] = {**score(mixture_probs(w, e_probs), w), "gate_seconds": seconds}
    return {"seed": seed, "temperatures": temps.tolist(), "systems": systems}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    profile = PROFILES["quick" if args.quick else "full"]["head"]
    data = limited_domains(profile, None)
    names = list(data)
    encoder = BaseEncoder()
    cache = TensorCache(Path(os.environ.get("MOECOLLAB_CACHE", "~/.cache/moecollab")).expanduser())
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            log(f"seed {seed}")
            runs.append(run_seed(seed, data, names, encoder, cache, Path(folder)))
    systems = list(runs[0]["systems"])
    print(f"\n{'system':45} {'accuracy %':>14} {'bbc %':>7} {'bbc kept %':>10} "
          f"{'vs mono':>8} {'of oracle':>9}")  # fmt: skip
    for s in systems:
        acc = torch.tensor([r["systems"][s]["accuracy"] for r in runs]) * 100
        bbc = torch.tensor([r["systems"][s]["domains"]["bbc"] for r in runs]) * 100
        mono = torch.tensor([r["systems"]["monolithic"]["accuracy"] for r in runs]) * 100
        oracle = torch.tensor([r["systems"]["oracle"]["accuracy"] for r in runs]) * 100
        kept = [r["systems"][s]["bbc_kept"] for r in runs]
        kept_s = "n/a" if kept[0] is None else f"{100 * sum(kept) / len(kept):.1f}"
        std = acc.std().item() if len(runs) > 1 else 0.0
        print(f"{s:45} {acc.mean():8.2f} ± {std:4.2f} {bbc.mean():7.1f} {kept_s:>10} "
              f"{(acc - mono).mean():+8.2f} {100 * (acc / oracle).mean():8.1f}%")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
