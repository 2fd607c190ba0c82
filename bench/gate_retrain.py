"""Gate retraining from cached tensors: time for N experts and n router examples.

The gate trains on base features (n, D) and the experts' cached output
distributions (n, N, U) only, so its cost does not depend on how big the
experts are. This builds those tensors from real experts of both kinds on a
small encoder (their outputs are what the cache holds), scales them to the
requested size, and times retraining, cold and warm-started.

    .venv/bin/python bench/gate_retrain.py [--experts 8] [--examples 20000] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--examples", type=int, default=20000)
    parser.add_argument("--labels", type=int, default=5, help="labels per expert")
    parser.add_argument("--hidden-size", type=int, default=384, help="base model width D")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from routing.config import GateConfig, TrainConfig
    from routing.gate_training import train_gate, warm_start

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, e, d = args.examples, args.experts, args.hidden_size
    u = e * args.labels
    domain = torch.arange(n) % e
    centres = torch.randn(e, d)
    features = centres[domain] + 0.8 * torch.randn(n, d)  # (n, D)
    print(
        f"{args.threads} CPU threads, torch {torch.__version__}; n={n:,} router examples, "
        f"N={e} experts, U={u} union labels, D={d}"
    )
    print(
        f"{'expert kind':<12}{'expert params':>14}{'cached tensor MB':>18}{'cold s':>8}"
        f"{'warm s':>8}{'steps':>7}"
    )
    for kind, params in (
        ("head", d * 256 + 256 * args.labels),
        ("lora", 6 * 2 * 2 * 8 * d + d * args.labels),
    ):
        # What the cache holds for either kind: each expert's distribution over its labels.
        probs = torch.zeros(n, e, u)
        for k in range(e):
            logits = torch.randn(n, args.labels) + 3.0 * (domain == k).float()[:, None] * (
                torch.nn.functional.one_hot(torch.randint(args.labels, (n,)), args.labels)
            )
            probs[:, k, k * args.labels : (k + 1) * args.labels] = logits.softmax(-1)
        targets = domain * args.labels + torch.randint(args.labels, (n,))
        owner = domain[:, None] == torch.arange(e)[None, :]
        t0 = time.perf_counter()
        gate, log = train_gate(
            features, probs, targets, owner, gate_config=GateConfig(), train_config=TrainConfig()
        )
        cold = time.perf_counter() - t0
        # warm start: the same gate less its last expert, extended by one
        smaller, _ = train_gate(
            features[domain < e - 1],
            probs[domain < e - 1][:, : e - 1],
            targets[domain < e - 1],
            owner[domain < e - 1][:, : e - 1],
            train_config=TrainConfig(epochs=5),
        )
        t0 = time.perf_counter()
        init = warm_start(smaller, [features[domain == e - 1]], features[domain < e - 1])
        train_gate(features, probs, targets, owner, train_config=TrainConfig(), init=init)
        warm = time.perf_counter() - t0
        mb = (features.numel() + probs.numel()) * 4 / 2**20
        tc = TrainConfig()
        steps = len(log["history"]) * min(tc.max_steps_per_epoch, -(-n // tc.batch_size))
        print(f"{kind:<12}{params:>14,}{mb:>18.1f}{cold:>8.2f}{warm:>8.2f}{steps:>7}")
    print("the cached tensors have the same shape for both kinds, so the time does too")


if __name__ == "__main__":
    main()
