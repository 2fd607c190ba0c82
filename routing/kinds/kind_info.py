"""What a kind of mixture is, readable without loading it (no torch): `KindInfo`, and
every kind found (`KINDS`). The implementation behind it is `interface.MixtureKind`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import GateConfig, LossWeights, TrainConfig, checked, from_dict, to_dict

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

    def gguf_refusal(self, metrics: dict) -> str | None:
        """Why a composition has no GGUF file (None: it has one)."""
        return f"llama.cpp runs language models; a {self.title.lower()} composition has none"

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
