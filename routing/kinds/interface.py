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

from .kind_info import COMMON_SECTIONS, KINDS, SEED_HELP, KindInfo

__all__ = ["COMMON_SECTIONS", "KINDS", "SEED_HELP", "ExpertScore", "KindInfo", "MixtureKind"]


@dataclass
class ExpertScore:
    """An expert alone on its domain's held-out data."""

    metrics: dict  # the kind's figures; `metrics[kind.metric]` is the one compared
    problems: list[str]  # why it should be rejected, each a sentence to act on; [] passes
    summary: str  # one line: the figure a contributor sees first
    details: dict = field(default_factory=dict)  # anything else for the report


class MixtureKind(ABC):
    """The implementation of a kind; `info` says what it is."""

    info: ClassVar[KindInfo]

    # --- data and base model ---------------------------------------------------

    @abstractmethod
    def read_examples(self, data: bytes, filename: str):
        """A domain's data file (as uploaded) -> `routing.data.Split`, or a DatasetError."""

    @abstractmethod
    def load_base(self, name: str, *, revision: str | None = None, device=None, anchor=None,
                  anchor_config: dict | None = None):  # fmt: skip
        """The frozen base model, ready to compute features (seconds to load: keep it), with
        the mixture's anchor file merged into it when the kind has anchors."""

    def score_base(self, base, data: dict, cache, *, routing=None) -> dict[str, float]:
        """Every domain's held-out metric on `base` alone (kinds with anchors: the plain
        base, beside a composition made on the anchored one)."""
        raise NotImplementedError(f"{self.info.title} mixtures have no anchor")

    def score_anchor(self, base, anchored, data: dict, cache, *, routing=None) -> ExpertScore:
        """An anchor candidate (`anchored`: the base with it merged) on every domain's
        held-out data against the base alone; kinds without anchors have none to score."""
        raise NotImplementedError(f"{self.info.title} mixtures have no anchor")

    def anchor_peft_zip(self, path, *, base_model: str, adapter_config: dict | None) -> bytes:
        """A mixture's anchor file as a zipped PEFT adapter folder (the plain-PEFT recipe
        downloads it); kinds without anchors have none."""
        raise NotImplementedError(f"{self.info.title} mixtures have no anchor")

    # --- data, experts ---------------------------------------------------------------

    @abstractmethod
    def packaged_data(self) -> dict[str, str]:
        """The domains whose data ships with the project: name -> description."""

    @abstractmethod
    def load_packaged(self, name: str):
        """A packaged domain's data (`routing.data.DomainData`), split deterministically."""

    @abstractmethod
    def train_expert(self, base, data, path, *, cache, **options) -> dict:
        """Train an expert on `data.train` with the kind's recipe (the CLI's `train`;
        `options` are its settings) and write it to `path` as the kind's expert file;
        a summary of what was trained."""

    @abstractmethod
    def check_expert(
        self,
        path: str | os.PathLike,
        *,
        base,
        labels: list[str] | None = None,
        adapter_config: dict | None = None,
        look_beside: bool = True,
        routing: dict | None = None,
    ):
        """Read only the header and check it against the kind's contract, the base model's
        spec (its anchor included), the domain's labels and what the mixture's routing
        settings run; a ContractError says what is wrong."""

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

    @abstractmethod
    def light_base(self, model) -> tuple[str, str | None, str]:
        """(name, revision, fingerprint of the weights) of the base `model` runs on (for
        its light export, `routing.light.write_light`)."""

    @abstractmethod
    def light_usage(self, name: str) -> list[str]:
        """Shell lines that load a light export (unzipped as `name`) with the CLI."""
