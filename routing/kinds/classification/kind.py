"""Text classification mixtures: experts are classifiers over a frozen encoder, the
composition mixes their label distributions in the union label space.

This module is light to import (no torch): the header check runs in web processes;
the tensor code is imported by the methods that need it, in workers and the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...data import read_table
from ..interface import ExpertScore, MixtureKind
from .contract import check_expert_file
from .info import INFO


class ClassificationKind(MixtureKind):
    info = INFO

    def read_examples(self, data: bytes, filename: str):
        fmt = "jsonl" if filename.lower().endswith((".jsonl", ".ndjson")) else "csv"
        return read_table(data, fmt=fmt)

    def load_base(self, name: str, *, revision: str | None = None, device=None, anchor=None,
                  anchor_config: dict | None = None):  # fmt: skip
        from .encoder import BaseEncoder

        if anchor is not None:
            raise ValueError("a classification mixture has no anchor")

        return BaseEncoder(name, revision=revision or None, device=device)

    def packaged_data(self) -> dict[str, str]:
        from ...data import PACKAGED

        return {name: description for name, (description, _) in PACKAGED.items()}

    def load_packaged(self, name: str):
        from ...data import load_domain

        return load_domain(name)

    def train_expert(self, base, data, path, *, cache, **options) -> dict:
        from .training import train_expert_file

        return train_expert_file(base, data, path, cache=cache, **options)

    def check_expert(
        self, path, *, base, labels=None, adapter_config=None, look_beside: bool = True,
        routing=None,
    ):  # fmt: skip
        return check_expert_file(
            path, base=base, labels=labels, adapter_config=adapter_config, look_beside=look_beside
        )

    def load_expert(self, path, *, base, labels=None, adapter_config=None, name=None):
        from .experts import load_expert

        return load_expert(path, base=base, labels=labels, adapter_config=adapter_config, name=name)

    def score_expert(self, expert, base, data, cache, *, routing=None, tolerance=0.0):
        """Held-out accuracy against always answering the most frequent label."""
        import torch

        from .composing import expert_log_probs
        from .scoring import accuracy, likely_causes, macro_f1

        ev = data.eval
        index = {label: i for i, label in enumerate(expert.labels)}
        truth = torch.tensor([index.get(x, -1) for x in ev.labels])
        pred = expert_log_probs(expert, base, ev.texts, cache).argmax(-1)
        majority = max(ev.labels.count(x) for x in set(ev.labels)) / len(ev.labels)
        metrics = {
            "accuracy": accuracy(pred, truth),
            "macro_f1": macro_f1(pred, truth, range(len(expert.labels))),
            "eval_examples": len(ev),
            "majority_baseline": majority,
        }
        problems, details = [], {}
        if metrics["accuracy"] <= majority:
            causes = likely_causes(pred, truth, expert.labels)
            problems.append(
                f"held-out accuracy {metrics['accuracy']:.4f} on {len(ev)} texts is no better "
                f"than always predicting the most frequent label ({majority:.4f}). Likely "
                "causes, most likely first: "
                + "; ".join(f"({i}) {c}" for i, c in enumerate(causes, 1))
            )
            details["likely_causes"] = causes
        return ExpertScore(
            metrics, problems, f"held-out accuracy {metrics['accuracy']:.4f}", details
        )

    def compose(self, base, experts, expert_domains, data, *, cache, routing: dict, previous=None):
        from .composing import compose

        configs = self.info.routing_configs(routing)
        return compose(
            base,
            experts,
            expert_domains,
            {d: data[d] for d in set(expert_domains)},
            cache=cache,
            gate_config=configs["gate"],
            train_config=configs["train"],
            routing=configs["classifier"],
            previous=previous,
        )

    def contributions(self, composed) -> list[dict]:
        from .composing import contributions

        return contributions(composed)

    def save_composition(self, model, folder) -> Path:
        return model.save(folder)

    def load_composition(self, folder: str | os.PathLike, base):
        from .model import MoEClassifier

        return MoEClassifier.load(folder, encoder=base)

    def export(self, model, folder, card) -> Path:
        from .export import export_composition

        return export_composition(model, folder, card)

    def light_base(self, model) -> tuple[str, str | None, str]:
        return model.encoder.name, model.encoder.revision, model.encoder.fingerprint

    def light_usage(self, name: str) -> list[str]:
        return [
            f'python -m routing predict {name} "The striker scored twice."  # loads the base',
            f"python -m routing export {name} --out {name}-hf  # the transformers folder",
        ]


CLASSIFICATION = ClassificationKind()
