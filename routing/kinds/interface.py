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

from ..config import GateConfig, LossWeights, TrainConfig, checked, from_dict, to_dict


@dataclass
class ExpertScore:
    """An expert alone on its domain's held-out data."""

    metrics: dict  # the kind's figures; `metrics[kind.metric]` is the one compared
    problems: list[str]  # why it should be rejected, each a sentence to act on; [] passes
    summary: str  # one line: the figure a contributor sees first
    details: dict = field(default_factory=dict)  # anything else for the report


# Routing settings every kind has: (key in `Mixture.routing`, config class, title).
COMMON_SECTIONS = (("gate", GateConfig, "Gate"), ("loss", LossWeights, "Loss weight"))
SEED_HELP = "seed of the gate's training"


@dataclass(frozen=True)
class KindInfo:
    """What a kind is, readable without loading it (no torch): the facts the hub asks
    about (its metric and how the no-regression gate judges it, its queue, whether it has
    labels or generates, its routing settings) and how its exports are used.

    A kind's package holds one in `info.py` as `INFO` (`routing.kinds` finds it there);
    its templates, under `templates/kinds/<name>/`, fill the parts of the hub's pages that
    differ between kinds (`template()`)."""

    name: str  # as stored on a mixture: "classification"
    title: str  # for people: "Text classification"
    metric: str  # the per-domain score experts and compositions are judged by
    metric_title: str
    higher_is_better: bool
    second_metric: str  # the figure shown beside it on the leaderboard
    second_metric_title: str
    auto_class: str  # the transformers Auto class that loads an export
    pipeline_task: str  # the transformers pipeline that runs an export
    example_input: str  # a sentence the snippets feed the pipeline
    implementation: str  # "module:attribute" of its MixtureKind
    expert_format_version: int  # of the expert file (docs/expert-format.md)
    has_labels: bool  # whether a domain's data is labelled texts (else texts alone)
    generates: bool  # whether a composition generates text (the Try-it box)
    data_formats: str  # what a domain's data file may be, for the upload form
    tolerance_help: str  # what a mixture's tolerance means for this kind
    metric_digits: int = 4  # decimals a page shows of the metric
    has_anchor: bool = False  # whether a mixture may have an anchor merged into its base
    queue: str | None = None  # the queue of every job of this kind; None: each job's own
    routing_sections: tuple = ()  # the kind's own (key, config class, title) sections
    gate_defaults: dict = field(default_factory=dict)  # its gate's defaults, where not ours

    # --- routing settings ------------------------------------------------------------

    def sections(self) -> tuple:
        """Every (key, config class, title) section of the kind's routing settings."""
        return COMMON_SECTIONS + tuple(self.routing_sections)

    def clean_routing(self, value) -> dict:
        """A mixture's routing settings checked and completed with the defaults: one dict
        per section and "seed"; a ValueError names the setting and what is wrong."""
        if not isinstance(value, dict):
            raise ValueError("routing must be an object with the keys gate, loss and seed")
        keys = [key for key, _, _ in self.sections()] + ["seed"]
        for key in value:
            owner = _section_owner(key)
            if key not in keys and owner is not None:
                raise ValueError(
                    f"routing.{key} is for {owner.name} mixtures ({owner.title.lower()}) only"
                )
        unknown = sorted(set(value) - set(keys))
        if unknown:
            raise ValueError(f"routing has unknown keys {unknown}; known: {keys}")
        cleaned = {}
        for key, cls, _ in self.sections():
            defaults = self.gate_defaults if key == "gate" else None
            cleaned[key] = to_dict(checked(cls, value.get(key), f"routing.{key}", defaults))
        seed = value.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int | float) or seed < 0:
            raise ValueError(f"routing.seed must be a whole number of at least 0, not {seed!r}")
        if not float(seed).is_integer():
            raise ValueError(f"routing.seed must be a whole number, not {seed!r}")
        cleaned["seed"] = int(seed)
        return cleaned

    def check_routing_for_experts(self, routing: dict, experts: dict[str, list[str]]) -> None:
        """A ValueError when cleaned `routing` cannot compose the mixture's experts (their
        display names -> the modules they adapt)."""

    def default_routing(self) -> dict:
        return self.clean_routing({})

    def routing_configs(self, routing: dict | None) -> dict:
        """A stored mixture's routing settings as configs, by section (a mixture saved
        before a section existed gets its defaults), and "train" (TrainConfig)."""
        routing = routing or {}
        configs = {}
        for key, cls, _ in self.sections():
            defaults = self.gate_defaults if key == "gate" else {}
            configs[key] = from_dict(cls, {**defaults, **(routing.get(key) or {})})
        configs["train"] = TrainConfig(seed=int(routing.get("seed", 0)), loss=configs["loss"])
        return configs

    # --- what the hub shows -------------------------------------------------------------

    def template(self, part: str) -> list[str]:
        """The templates of one part of a page, the kind's own first (`part.html` under
        `templates/kinds/<name>/` in its package), then the hub's default."""
        return [f"kinds/{self.name}/{part}.html", f"kinds/default/{part}.html"]

    @property
    def parts(self) -> _Parts:
        """`kind.parts.contract` in a template: `template("contract")`."""
        return _Parts(self)

    def page_context(self, routing: dict | None, base_name: str, *, contract: dict | None = None,
                     anchor_url: str = "") -> dict:  # fmt: skip
        """What the kind's parts of a mixture page need beyond the mixture itself
        (`contract`: `expert_contract`'s; `anchor_url`: where its anchor downloads)."""
        return {}

    def remote_code(self, metrics: dict) -> bool:
        """Whether a composition with these metrics exports as this project's remote code
        (`trust_remote_code=True` to load it) rather than an architecture transformers
        ships."""
        return True

    def expert_contract(self, base, routing: dict | None) -> dict:
        """What an expert for a mixture on `base` (a BaseSpec, its anchor included) with
        these routing settings must be: generated from the mixture for its pages and the
        API, never written by hand."""
        return {
            "format_version": str(self.expert_format_version),
            "base_model": base.name,
            "base_fingerprint": base.fingerprint or None,
        }

    def score_rows(self, metrics: dict, names: list[str], charted: list[int]) -> list[dict]:
        """The rows of a composition page's held-out table (`charted`: the gate indices of
        the experts named in `names`)."""
        return [
            {"domain": d, "score": m.get(self.metric), **m}
            for d, m in (metrics.get("domains") or {}).items()
        ]

    def acceptance(self, tolerance: float) -> str:
        """What the mixture asks of an expert, in a sentence."""
        return f"held-out evaluation; no other domain may fall by more than {tolerance:.3f}"

    def overall(self, report: dict | None) -> float | None:
        """A composition's overall figure in the kind's metric, if it has one."""
        value = ((report or {}).get("overall") or {}).get(self.metric)
        return None if value is None else float(value)

    # --- judging ------------------------------------------------------------------------

    def expert_figures(self, metrics: dict, report: dict, domain: str,
                       anchor_report: dict | None = None) -> list[dict]:  # fmt: skip
        """Rows of an expert page's table, one per domain its validation scored: what the
        candidate composition with it scores beside the current composition, and for the
        kind's own figures what else it knows (`anchor_report`: the mixture's anchor's)."""
        current, candidate = report.get("current") or {}, report.get("candidate") or {}
        return [
            {"domain": d, "own": d == domain, "current": current.get(d), "candidate": value}
            for d, value in candidate.items()
        ]

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
        """A composition's report in one line (job messages, Hub commit messages)."""
        value = self.overall(report)
        if value is None:
            return f"no overall {self.metric.replace('_', ' ')} yet"
        return f"overall held-out {self.metric.replace('_', ' ')} {value:.{self.metric_digits}f}"


class _Parts:
    def __init__(self, info: KindInfo):
        self.info = info

    def __getitem__(self, part: str) -> list[str]:
        return self.info.template(part)


# Every kind found (`routing.kinds` fills it when it is imported): name -> KindInfo.
KINDS: dict[str, KindInfo] = {}


def _section_owner(key: str):
    """The kind whose own routing section `key` is, if any."""
    for info in KINDS.values():
        if any(key == k for k, _, _ in info.routing_sections):
            return info
    return None


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
