"""How long a contributor waits to train a `head` expert on a laptop CPU.

Trains on a few thousand examples of packaged datasets with a cold feature
cache (embedding included) and again with a warm one, and prints the figures.

    .venv/bin/python bench/train_head.py [--examples 3000] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (a laptop: 2)")
    parser.add_argument("--datasets", default="rotten,bbc")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from routing.cache import TensorCache
    from routing.data import load_domain
    from routing.kinds.classification.encoder import BaseEncoder
    from routing.kinds.classification.training import train_expert_file

    print(
        f"machine: {platform.processor() or platform.machine()}, {args.threads} CPU threads, "
        f"torch {torch.__version__}"
    )
    started = time.perf_counter()
    encoder = BaseEncoder(device="cpu")
    print(f"base model loaded in {time.perf_counter() - started:.1f} s")
    print(
        f"{'dataset':<10}{'train ex':>9}{'cold cache s':>14}{'warm cache s':>14}"
        f"{'accuracy':>10}{'eval ex':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache = TensorCache(Path(tmp) / "cache")
        for name in args.datasets.split(","):
            data = load_domain(name)
            data.train = data.train.limited(args.examples)
            data.eval = data.eval.limited(1000)
            times = []
            for attempt in ("cold", "warm"):
                t0 = time.perf_counter()
                summary = train_expert_file(
                    encoder,
                    data,
                    Path(tmp) / f"{name}-{attempt}.st",
                    architecture="head",
                    cache=cache,
                )
                times.append(time.perf_counter() - t0)
            print(
                f"{name:<10}{summary['train_examples']:>9}{times[0]:>14.1f}{times[1]:>14.1f}"
                f"{summary['eval_accuracy']:>10.4f}{summary['eval_examples']:>9}"
            )
    print("cold: embedding the training and eval texts + training; warm: features cached")


if __name__ == "__main__":
    main()
