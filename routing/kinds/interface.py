"""The one interface behind which everything kind-specific of a mixture sits.

A mixture's *kind* (`classification` today) decides what an expert file is, how an
expert is scored on held-out data, what is cached per example, how the gate is
trained and evaluated, and how a composition is saved, exported and described in its
model card. The hub's services and the CLI call a kind only through this interface,
so a new kind is a new package under `routing/kinds/`, registered in
`routing.kinds.KINDS` (docs/routing.md).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


@dataclass
class ExpertScore:
    """An expert alone on its domain's held-out data."""

    metrics: dict  # the kind's figures; `metrics[kind.metric]` is the one compared
    problems: list[str]  # why it should be rejected, each a sentence to act on; [] passes
    summary: str  # one line: the figure a contributor sees first
    details: dict = field(default_factory=dict)  # anything else for the report


@dataclass(frozen=True)
class KindInfo:
    """What a kind is, readable without loading it (no torch): names, its metric and how
    the no-regression gate judges it, and how its exports are used."""

    name: str  # as stored on a mixture: "classification"
    title: str  # for people: "Text classification"
    metric: str  # the per-domain score experts and compositions are judged by
    metric_title: str
    higher_is_better: bool
    auto_class: str  # the transformers Auto class that loads an export
    pipeline_task: str  # the transformers pipeline that runs an export
    example_input: str  # a sentence the snippets feed the pipeline
    implementation: str  # "module:attribute" of its MixtureKind

    def domain_scores(self, report: dict) -> dict[str, float]:
        return {d: m[self.metric] for d, m in report.get("domains", {}).items()}

    def worsening(self, before: float, after: float) -> float:
        """How much worse `after` is than `before`, in the units of the tolerance: points
        of a score where higher is better (accuracy), a relative rise where lower is
        better (perplexity: 0.02 is 2 % higher)."""
        if self.higher_is_better:
            return before - after
        return (after - before) / before if before else 0.0

    def regressions(
        self, before: dict, after: dict, *, tolerance: float, own_domain: str
    ) -> list[str]:
        """The no-regression gate: every other domain that a candidate composition makes
        worse by more than the tolerance, as a sentence the contributor can act on."""
        problems = []
        for domain, old in before.items():
            new = after.get(domain)
            if domain == own_domain or new is None:
                continue
            if self.worsening(old, new) > tolerance:
                problems.append(
                    f"with this expert, domain {domain!r} falls from {old:.4f} to {new:.4f} "
                    f"(more than the mixture's tolerance {tolerance}); the gate sends its "
                    f"examples to this expert: train on data closer to {own_domain!r} only"
                )
        return problems

    def summary(self, report: dict) -> str:
        return f"overall {self.metric.replace('_', ' ')} {report['overall'][self.metric]:.4f}"


class MixtureKind(ABC):
    """The implementation of a kind; `info` says what it is."""

    info: ClassVar[KindInfo]

    # --- data and base model ---------------------------------------------------

    @abstractmethod
    def read_examples(self, data: bytes, filename: str):
        """A domain's data file (as uploaded) -> `routing.data.Split`, or a DatasetError."""

    @abstractmethod
    def load_base(self, name: str, *, revision: str | None = None, device=None):
        """The frozen base model, ready to compute features (seconds to load: keep it)."""

    # --- experts ---------------------------------------------------------------

    @abstractmethod
    def check_expert(
        self,
        path: str | os.PathLike,
        *,
        base,
        labels: list[str] | None = None,
        adapter_config: dict | None = None,
        look_beside: bool = True,
    ):
        """Read only the header and check it against the kind's contract, the base model's
        spec and the domain's labels; a ContractError says what is wrong."""

    @abstractmethod
    def load_expert(
        self,
        path: str | os.PathLike,
        *,
        base,
        labels: list[str] | None = None,
        adapter_config: dict | None = None,
        name: str | None = None,
    ):
        """Check, then load an expert file (its tensors, NaN/Inf refused)."""

    @abstractmethod
    def score_expert(
        self, expert, base, data, cache, *, routing: dict | None = None, tolerance: float = 0.0
    ) -> ExpertScore:
        """The expert alone on `data.eval` (its outputs are cached for the gate), judged
        with the mixture's routing settings and tolerance where the kind uses them."""

    # --- compositions -----------------------------------------------------------

    @abstractmethod
    def compose(self, base, experts, expert_domains, data, *, cache, routing: dict, previous=None):
        """Train the gate on the router splits (warm-started from `previous`, a loaded
        composition, when its experts come first) and score the composition on the eval
        splits. Returns an object with `.model` and `.report` (the held-out report:
        `report["domains"][d][metric]`, `report["overall"]`, utilisation, routing matrix)."""

    @abstractmethod
    def contributions(self, composed) -> list[dict]:
        """Per expert in gate order: {"share": traffic share, "drop": the overall score
        lost without it, in the kind's metric (positive: the expert helps)}."""

    @abstractmethod
    def save_composition(self, model, folder: str | os.PathLike) -> Path:
        """Write the composition folder the hub keeps (and `load_composition` reads)."""

    @abstractmethod
    def load_composition(self, folder: str | os.PathLike, base):
        """A saved composition on the given base model."""

    @abstractmethod
    def export(self, model, folder: str | os.PathLike, card) -> Path:
        """A Hugging Face model folder (weights, remote code, tokenizer, model card)."""
