"""Gate retraining from cached tensors: time for N experts and n router examples.

The gate trains on base features (n, D) and the experts' cached output
distributions (n, N, U) only, so its cost does not depend on how big the
experts are. This builds those tensors from real experts of both kinds on a
small encoder (their outputs are what the cache holds), scales them to the
requested size, and times what a retrain does with them, cold and warm-started:
calibrating the experts, and for `head` experts the signals the gate reads from
them, then training the gate with domain-balanced draws (the hub's defaults).

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
    from routing.kinds.classification.calibration import (
        SIGNALS_PER_EXPERT,
        calibrated,
        fit_temperatures,
        gate_inputs,
    )

    def retrain(features, probs, targets, owner, reads, domain, init=None, epochs=20):
        """The hub's retrain on cached tensors -> (gate, log, the gate's inputs)."""
        masks = probs.sum(0) > 0  # (N, U): the labels each expert gives mass to
        temps = fit_temperatures(probs, targets, owner, masks)
        probs = calibrated(probs, temps, masks)
        x = gate_inputs(features, probs, masks, reads)
        if init is not None and reads:
            init = init.widened(SIGNALS_PER_EXPERT * probs.shape[1])
        side = SIGNALS_PER_EXPERT * probs.shape[1] if reads else 0
        if init is not None:  # the new output row, fitted with the old gate frozen
            new = owner[:, -1]
            init = warm_start(init, [x[new]], x[~new])
        tc = TrainConfig(epochs=epochs, balance_domains=True)
        gate, log = train_gate(
            x, probs, targets, owner, gate_config=GateConfig(), train_config=tc,
            init=init, side_dim=side, domain_idx=domain,
        )  # fmt: skip
        return gate, log

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, e, d = args.examples, args.experts, args.hidden_size
    u = e * args.labels
    domain = torch.arange(n) % e
    centres = torch.randn(e, 3 * d)
    # what the hub's gate reads of the base pass: the last layer's mean and [CLS] vector and
    # the middle layer's mean (3D)
    features = centres[domain] + 0.8 * torch.randn(n, 3 * d)  # (n, 3D)
    print(
        f"{args.threads} CPU threads, torch {torch.__version__}; n={n:,} router examples, "
        f"N={e} experts, U={u} union labels, D={d}, the gate reads 3D features"
    )
    print(
        f"{'expert kind':<12}{'gate reads':>16}{'expert params':>14}{'cached tensor MB':>18}"
        f"{'cold s':>8}{'warm s':>8}{'steps':>7}"
    )
    # a worker is a long-lived process: PyTorch's one-off warm-up is not a retrain's cost
    warm_up = torch.zeros(64, e, u)
    warm_up[:, :, 0] = 1
    retrain(features[:64], warm_up, torch.zeros(64, dtype=torch.long), domain[:64, None] ==
            torch.arange(e)[None], True, domain[:64], epochs=1)  # fmt: skip
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
        reads = kind == "head"  # a gate reads its experts only when they are all heads
        t0 = time.perf_counter()
        gate, log = retrain(features, probs, targets, owner, reads, domain)
        cold = time.perf_counter() - t0
        # warm start: the same gate less its last expert, extended by one
        old = domain < e - 1
        smaller, _ = retrain(
            features[old], probs[old][:, : e - 1, : (e - 1) * args.labels], targets[old],
            owner[old][:, : e - 1], reads, domain[old], epochs=5,
        )  # fmt: skip
        t0 = time.perf_counter()
        retrain(features, probs, targets, owner, reads, domain, init=smaller)
        warm = time.perf_counter() - t0
        mb = (features.numel() + probs.numel()) * 4 / 2**20
        tc = TrainConfig()
        steps = len(log["history"]) * min(tc.max_steps_per_epoch, -(-n // tc.batch_size))
        what = "features+experts" if reads else "features"
        print(f"{kind:<12}{what:>16}{params:>14,}{mb:>18.1f}{cold:>8.2f}{warm:>8.2f}{steps:>7}")
    print(
        "the cached tensors have the same shape for both kinds; a gate over head experts "
        "also reads 2 signals per expert"
    )


if __name__ == "__main__":
    main()
