"""Can the gate beat the monolithic model? Routing variants for `head` experts (or, with
`--kind lora`, `lora` experts), measured on the multi-domain benchmark's data, splits,
experts and baseline (bench/paper.py's `full` profile), over seeds. Every variant trains
only on the router split and is the hub's own `compose` (top-2) with other
`ClassifierRouting` settings (for `lora` experts, all but the last):

- `gate (features only)`: the paper's gate (the last layer's mean-pooled features).
- `balanced`: router examples drawn with equal weight per domain.
- `reads experts`: the gate also reads what each expert says about the input: its top
  probability and its normalised entropy (free for `head` experts, whose outputs come
  from the shared features).
- `calibrated`: each expert's temperature fitted on the router split before mixing.
- combinations of those, a wider gate, and a gate that reads more of the base model (the
  last layer's mean and [CLS] vector and the middle layer's mean, from the same pass);
  all of them together are the hub's default. For `lora` experts, the last row is a gate
  that reads them, outside the hub (it needs every expert's pass, so the hub does not).

    .venv/bin/python bench/routing_study.py [--seeds 3] [--quick] [--kind head|lora]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
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
from routing.config import ClassifierRouting, GateConfig, TrainConfig, from_dict  # noqa: E402
from routing.gate_training import train_gate  # noqa: E402
from routing.kinds.classification.calibration import (  # noqa: E402
    SIGNALS_PER_EXPERT,
    expert_signals,
)
from routing.kinds.classification.composing import (  # noqa: E402
    cached_split,
    compose,
    expert_log_probs,
)
from routing.kinds.classification.encoder import BaseEncoder  # noqa: E402
from routing.kinds.classification.model import union_labels  # noqa: E402
from routing.kinds.classification.scoring import evaluate_predictions  # noqa: E402
from routing.losses import mixture_probs  # noqa: E402

MEAN = {"gate_features": "mean"}  # the mean-pooled last layer, as the experts read it
VARIANTS = {  # name: (ClassifierRouting fields, gate hidden width)
    "gate (features only)": (
        {**MEAN, "read_experts": False, "calibrate": False, "balance_domains": False}, 128
    ),
    "balanced": ({**MEAN, "read_experts": False, "calibrate": False}, 128),
    "reads experts": ({**MEAN, "calibrate": False, "balance_domains": False}, 128),
    "reads experts, balanced": ({**MEAN, "calibrate": False}, 128),
    "calibrated": ({**MEAN, "read_experts": False, "balance_domains": False}, 128),
    "reads calibrated experts, balanced": (MEAN, 128),
    "wider gate (512), reads calibrated experts, balanced": (MEAN, 512),
    "gate on [mean, CLS] last + mean middle layer, features only": (
        {"read_experts": False, "calibrate": False, "balance_domains": False}, 128
    ),
    "[mean, CLS] last + mean middle, reads calibrated experts, balanced (the hub's default)": (
        {}, 128
    ),
}  # fmt: skip
LORA_VARIANTS = {  # the hub's gate over lora experts does not read them
    "gate (features only)": ({**MEAN, "calibrate": False, "balance_domains": False}, 128),
    "calibrated, balanced": (MEAN, 128),
    "[mean, CLS] last + mean middle, calibrated, balanced (the hub's default)": ({}, 128),
}


def reading_lora_experts(seed, experts, names, data, encoder, cache, ev):
    """A gate that reads calibrated `lora` experts, balanced, outside the hub's `compose`
    (which does not do it: it needs every expert's pass) -> (top-2 weights on the eval
    split, the calibrated eval expert_probs)."""
    router = cached_split(experts, names, data, "router", encoder, cache)
    # the hub's composition of the same experts, for its temperatures and label masks
    model = compose(encoder, experts, names, data, cache=cache,
                    train_config=TrainConfig(seed=seed)).model  # fmt: skip
    keep = router.targets >= 0
    probs = model.calibrated(router.expert_probs)
    x = torch.cat([router.features, expert_signals(probs, model.masks)], -1)
    gate, _ = train_gate(
        x[keep], probs[keep], router.targets[keep], router.domain_experts[keep],
        gate_config=GateConfig(top_k=2), domain_idx=router.domain_idx[keep],
        train_config=TrainConfig(seed=seed, balance_domains=True),
        side_dim=SIGNALS_PER_EXPERT * len(experts),
    )  # fmt: skip
    ev_probs = model.calibrated(ev.expert_probs)
    ev_x = torch.cat([ev.features, expert_signals(ev_probs, model.masks)], -1)
    with torch.inference_mode():
        return gate(ev_x).weights, ev_probs


def run_seed(kind, seed, data, names, encoder, cache, folder) -> dict:
    experts, _ = train_experts(kind, encoder, data, cache, folder, seed, 1)
    labels = union_labels([e.labels for e in experts])
    budget = sum(e.header.num_parameters for e in experts)
    mono, _, _ = train_monolithic(kind, encoder, data, labels, cache, folder, seed, 1, budget)
    ev = cached_split(experts, names, data, "eval", encoder, cache)
    n = len(experts)
    bbc = names.index("bbc")

    def score(probs, weights, report=None):
        report = report or evaluate_predictions(
            probs, weights, ev.targets, ev.domain_idx, ev.domains, ev.domain_labels
        )
        return {
            "accuracy": report["overall"]["accuracy"],
            "domains": {d: v["accuracy"] for d, v in report["domains"].items()},
            "bbc_kept": report["routing_matrix"][bbc][bbc] if weights.shape[1] == n else None,
        }

    systems = {}
    if kind == "head":
        with torch.inference_mode():
            mono_p = torch.softmax(mono.head(ev.features), -1)
    else:
        texts = [t for d in names for t in data[d].eval.texts]
        mono_p = expert_log_probs(mono, encoder, texts, cache).exp()
    systems["monolithic"] = score(mono_p, torch.ones(len(ev.targets), 1))
    oracle = torch.nn.functional.one_hot(ev.domain_idx, n).float()
    systems["oracle"] = score(mixture_probs(oracle, ev.expert_probs), oracle)
    temperatures = None
    for name, (options, hidden) in (VARIANTS if kind == "head" else LORA_VARIANTS).items():
        composed = compose(
            encoder, experts, names, data, cache=cache,
            gate_config=GateConfig(top_k=2, hidden=hidden),
            train_config=TrainConfig(seed=seed),
            routing=from_dict(ClassifierRouting, options),
        )  # fmt: skip
        model, split = composed.model, composed.eval_split
        _, weights = model.mix_cached(split.gate_features, split.expert_probs)
        systems[name] = {
            **score(None, weights, composed.report),
            "gate_seconds": model.info["gate_seconds"],
        }
        if temperatures is None and (model.temperatures != 1).any():
            temperatures = model.temperatures.tolist()
    if kind == "lora":
        weights, probs = reading_lora_experts(seed, experts, names, data, encoder, cache, ev)
        name = "reads calibrated experts, balanced (every expert's pass: dense cost)"
        systems[name] = score(mixture_probs(weights, probs), weights)
    return {"seed": seed, "temperatures": temperatures, "systems": systems}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--kind", choices=("head", "lora"), default="head")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    profile = PROFILES["quick" if args.quick else "full"][args.kind]
    data = limited_domains(profile, None)
    names = list(data)
    encoder = BaseEncoder()
    cache = TensorCache(Path(os.environ.get("MOECOLLAB_CACHE", "~/.cache/moecollab")).expanduser())
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            log(f"seed {seed}")
            runs.append(run_seed(args.kind, seed, data, names, encoder, cache, Path(folder)))
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
