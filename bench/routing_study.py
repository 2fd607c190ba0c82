"""Can the gate beat the monolithic model? Routing variants for `head` experts (or, with
`--kind lora`, `lora` experts), measured on the multi-domain benchmark's data, splits,
experts and baseline (bench/paper.py's `full` profile), over seeds. Every variant trains
only on the router split, and all but the last are the hub's own `compose` (top-2) with
other `ClassifierRouting` settings:

- `gate (features only)`: the hub's gate before it read its experts (mean-pooled features).
- `balanced`: router examples drawn with equal weight per domain.
- `reads experts`: the gate also reads what each expert says about the input: its top
  probability and its normalised entropy (free for `head` experts, whose outputs come
  from the shared features).
- `calibrated`: each expert's temperature fitted on the router split before mixing.
- combinations of those (all three: the hub's default), a wider gate, and, outside the
  hub, a gate that reads more of the base model (the last layer's mean and [CLS] vector
  and the middle layer's mean); for `lora` experts, a gate that reads them (which needs
  every expert's pass, so the hub does not).

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
from routing.cache import TensorCache, texts_hash  # noqa: E402
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
from routing.tensors import mean_pool  # noqa: E402

VARIANTS = {  # name: (ClassifierRouting fields, gate hidden width)
    "gate (features only)": (
        {"read_experts": False, "calibrate": False, "balance_domains": False},
        128,
    ),  # noqa: E501
    "balanced": ({"read_experts": False, "calibrate": False}, 128),
    "reads experts": ({"calibrate": False, "balance_domains": False}, 128),
    "reads experts, balanced": ({"calibrate": False}, 128),
    "calibrated": ({"read_experts": False, "balance_domains": False}, 128),
    "reads calibrated experts, balanced (the hub's default)": ({}, 128),
    "wider gate (512), reads calibrated experts, balanced": ({}, 512),
}
LORA_VARIANTS = {  # a gate over lora experts reads the features only
    "gate (features only)": ({"calibrate": False, "balance_domains": False}, 128),
    "calibrated, balanced (the hub's default)": ({}, 128),
}


@torch.inference_mode()
def richer_features(encoder, texts: list[str], cache) -> torch.Tensor:
    """(n, 3D): the mean-pooled last layer, its [CLS] vector and the mean-pooled middle
    layer, for a gate that reads more of the base model than the hub's mean-pooled last
    layer. Cached like the hub's features."""

    def compute():
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), 3 * encoder.hidden_size)
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            batch = encoder.tokenize([texts[i] for i in idx])
            hidden = encoder.model(**batch, output_hidden_states=True).hidden_states
            mask = batch["attention_mask"]
            last, middle = hidden[-1], hidden[len(hidden) // 2]
            out[idx] = torch.cat(
                [mean_pool(last, mask), last[:, 0], mean_pool(middle, mask)], -1
            ).float()
        return out

    return cache.get_or_compute(
        "features-richer", (encoder.fingerprint, texts_hash(texts)), compute
    )


def custom_gate(seed, experts, names, data, encoder, cache, ev, *, richer: bool):
    """The hub's recipe (reads calibrated experts, balanced) outside the hub's `compose`:
    on the richer features (`richer`), or reading `lora` experts (which the hub does not
    do: it needs every expert's pass) -> (top-2 weights on the eval split, the calibrated
    eval expert_probs)."""
    router = cached_split(experts, names, data, "router", encoder, cache)
    # the hub's composition of the same experts, for its temperatures and label masks
    model = compose(encoder, experts, names, data, cache=cache,
                    train_config=TrainConfig(seed=seed)).model  # fmt: skip
    keep = router.targets >= 0
    side = SIGNALS_PER_EXPERT * len(experts)

    def inputs(split, expert_probs, features):
        if richer:
            parts = [richer_features(encoder, getattr(data[d], split).texts, cache) for d in names]
            features = torch.cat(parts)
        return torch.cat([features, expert_signals(expert_probs, model.masks)], -1)

    probs = model.calibrated(router.expert_probs)
    x = inputs("router", probs, router.features)
    gate, _ = train_gate(
        x[keep], probs[keep], router.targets[keep], router.domain_experts[keep],
        gate_config=GateConfig(top_k=2), domain_idx=router.domain_idx[keep],
        train_config=TrainConfig(seed=seed, balance_domains=True), side_dim=side,
    )  # fmt: skip
    ev_probs = model.calibrated(ev.expert_probs)
    with torch.inference_mode():
        return gate(inputs("eval", ev_probs, ev.features)).weights, ev_probs


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
        model = composed.model
        _, weights = model.mix_cached(ev.features, ev.expert_probs)
        systems[name] = {
            **score(None, weights, composed.report),
            "gate_seconds": model.info["gate_seconds"],
        }
        if temperatures is None and (model.temperatures != 1).any():
            temperatures = model.temperatures.tolist()
    custom = {
        "head": "reads calibrated experts, balanced, on [mean, CLS] last + mean middle layer",
        "lora": "reads calibrated experts, balanced (every expert's pass: dense cost)",
    }[kind]
    weights, probs = custom_gate(
        seed, experts, names, data, encoder, cache, ev, richer=kind == "head"
    )
    systems[custom] = score(mixture_probs(weights, probs), weights)
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
