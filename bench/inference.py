"""Train a small mixture end to end and time the composed model's inference.

Trains `head` experts on BBC News and Rotten Tomatoes and a `lora` expert on
Rotten Tomatoes, composes them, and prints per-domain accuracy, utilisation
and prediction throughput for top-1, top-2 and dense routing on one device.

    .venv/bin/python bench/inference.py [--device cuda] [--train 1000] [--eval 400]
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
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--train", type=int, default=1000, help="training examples per expert")
    parser.add_argument("--eval", type=int, default=400, help="eval examples per domain")
    parser.add_argument("--lora-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the best is shown")
    args = parser.parse_args()

    import torch

    from routing.cache import TensorCache
    from routing.config import GateConfig
    from routing.data import load_domain
    from routing.kinds.classification.composing import compose
    from routing.kinds.classification.encoder import BaseEncoder
    from routing.kinds.classification.experts import load_expert
    from routing.kinds.classification.model import MoEClassifier
    from routing.kinds.classification.training import train_expert_file

    encoder = BaseEncoder(device=args.device)
    device = encoder.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    )

    data = {}
    for dataset in ("bbc", "rotten"):
        d = load_domain(dataset)
        d.train, d.eval = d.train.limited(args.train), d.eval.limited(args.eval)
        d.router = d.router.limited(args.train)
        data[dataset] = d
    lora_domain = load_domain("rotten", name="rotten-lora")
    lora_domain.train = data["rotten"].train
    lora_domain.router, lora_domain.eval = data["rotten"].router, data["rotten"].eval

    with tempfile.TemporaryDirectory() as tmp:
        cache = TensorCache(Path(tmp) / "cache")
        experts, domains = [], []
        jobs = [
            ("bbc", "head", data["bbc"]),
            ("rotten", "head", data["rotten"]),
            ("rotten-lora", "lora", lora_domain),
        ]
        for label, kind, d in jobs:
            path = Path(tmp) / f"{label}.safetensors"
            options = {"epochs": args.lora_epochs} if kind == "lora" else {}
            t0 = time.perf_counter()
            summary = train_expert_file(encoder, d, path, architecture=kind, cache=cache, **options)
            print(
                f"expert {label:<12} {kind:<5} trained+scored in {time.perf_counter() - t0:6.1f} s,"
                f" held-out accuracy {summary['eval_accuracy']:.4f}"
            )
            experts.append(load_expert(path, base=encoder.spec, name=label))
            domains.append(d.name if kind == "head" else "rotten")
        composed = compose(
            encoder, experts, domains, data, cache=cache, gate_config=GateConfig(top_k=2)
        )
        comp, report = composed.model, composed.report
        print(
            f"gate trained in {comp.info['gate_seconds']:.2f} s on "
            f"{sum(len(d.router) for d in data.values())} router examples"
        )
        on_device = {p.device.type for p in comp.gate.parameters()}
        on_device |= {p.device.type for p in experts[0].head.parameters()}
        on_device |= {p.device.type for p in encoder.model.parameters()}
        print(f"parameters live on: {sorted(on_device)}")

        texts = [t for d in data.values() for t in d.eval.texts]
        truth = [lab for d in data.values() for lab in d.eval.labels]
        print(f"\n{'routing':<8}{'accuracy':>10}{'texts/s':>10}{'ms/batch64':>12}  load")
        for k in (1, 2, 3):
            comp.predict_proba(texts, top_k=k)  # warm-up: every batch shape seen once
            best = float("inf")
            for _ in range(args.repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                probs, weights = comp.predict_proba(texts, top_k=k, batch_size=64)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            pred = [comp.labels[i] for i in probs.argmax(-1)]
            acc = sum(p == t for p, t in zip(pred, truth, strict=True)) / len(truth)
            load = ", ".join(f"{x:.2f}" for x in weights.mean(0).tolist())
            label = "dense" if k == 3 else f"top-{k}"
            print(
                f"{label:<8}{acc:>10.4f}{len(texts) / best:>10.1f}"
                f"{1000 * best / (len(texts) / 64):>12.1f}  [{load}]"
            )
        comp.save(Path(tmp) / "mix")
        again = MoEClassifier.load(Path(tmp) / "mix", device=str(device))
        p2, _ = again.predict_proba(texts[:64])
        p1, _ = comp.predict_proba(texts[:64])
        print(f"\nsaved and reloaded: max |p - p'| = {float((p1 - p2).abs().max()):.2e}")
        print(
            "per-domain accuracy (cached eval, top-2): "
            + ", ".join(f"{d} {m['accuracy']:.4f}" for d, m in report["domains"].items())
        )


if __name__ == "__main__":
    main()
