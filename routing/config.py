"""Configuration dataclasses for gates, losses and training, and how a user's settings
are checked against them.

Every field has a documented default; configs serialise to plain dicts so a
composition folder records exactly how its gate was trained. A field a mixture's
maintainer may set is declared with `setting()`: its help text and the bounds of its
value live here, once, and the hub's forms, its API and the CLI read them (`checked`
builds a config from a user's dict and says what is wrong, by name).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, Field, asdict, dataclass, field, fields


def setting(
    default,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
):
    """A config field a user may set: its default, help text and the values it accepts
    (at least `minimum`, at most `maximum`, more than `above`, one of `choices`)."""
    bounds = {"minimum": minimum, "maximum": maximum, "above": above, "choices": choices}
    return field(default=default, metadata={"help": help, **bounds})


@dataclass
class LossWeights:
    """Weights of the gate-training loss terms (see docs/routing.md).

    total = task + routing * L_route + balance * L_balance
            + entropy_example * H_example - entropy_batch * H_batch + z * L_z
    """

    routing: float = setting(
        0.5, "cross-entropy of the gate to the example's domain experts", minimum=0
    )
    balance: float = setting(
        0.01, "load balancing: N times the sum of dispatch share times mean probability",
        minimum=0,
    )  # fmt: skip
    entropy_example: float = setting(
        0.01, "mean per-example routing entropy, lowered (confident routing)", minimum=0
    )
    entropy_batch: float = setting(
        0.01, "entropy of the batch-average routing, raised (balanced use)", minimum=0
    )
    z: float = setting(0.001, "router z-loss: mean squared logsumexp of the logits", minimum=0)


@dataclass
class GateConfig:
    """Shape and behaviour of the gate (router)."""

    hidden: int = setting(128, "hidden width of the gate's MLP; 0 makes it linear", minimum=0)
    temperature: float = setting(1.0, "softmax temperature of the gate", above=0)
    top_k: int = setting(
        2, "experts each input is sent to (dense when it is at least N)", minimum=1
    )
    train_top_k: int = setting(0, "top-k while training; 0 trains dense", minimum=0)
    noise_std: float = setting(0.0, "noise on the gate's logits while training", minimum=0)


@dataclass
class TrainConfig:
    """Optimisation settings shared by expert and gate training."""

    epochs: int = 20
    min_steps: int = 300  # small router sets still get this many optimiser steps
    balance_domains: bool = False  # draw router examples with equal total weight per domain
    batch_size: int = 256
    max_steps_per_epoch: int = 40  # a larger set is sampled: an epoch draws this many batches
    example_budget: int = 100_000  # large sets get fewer epochs: at most this many examples seen
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    loss: LossWeights = field(default_factory=LossWeights)


def to_dict(config) -> dict:
    return asdict(config)


def from_dict(cls, data: dict | None):
    """Build a config dataclass from a dict, refusing unknown keys (for configs the
    project wrote itself; a user's settings go through `checked`)."""
    data = dict(data or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    if cls is TrainConfig and isinstance(data.get("loss"), dict):
        data["loss"] = from_dict(LossWeights, data["loss"])
    return cls(**data)


# --- a user's settings --------------------------------------------------------------


def user_settings(cls) -> list[Field]:
    """The fields of a config that a user may set (declared with `setting()`)."""
    return [f for f in fields(cls) if "help" in f.metadata]


def value_type(f: Field) -> type:
    """bool, int, float or str: the type of a setting's default."""
    return type(f.default if f.default is not MISSING else f.default_factory())


def check_value(f: Field, value, where: str):
    """One setting's value, checked against its type and bounds; a ValueError names
    `where` and says what is wrong."""
    kind, meta = value_type(f), f.metadata
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, not {value!r}")
        return value
    if kind is str:
        choices = meta.get("choices")
        if not isinstance(value, str) or (choices and value not in choices):
            raise ValueError(f"{where} must be one of {list(choices or [])}, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite")
    if kind is int:
        if not float(value).is_integer():
            raise ValueError(f"{where} must be a whole number, not {value!r}")
        value = int(value)
    else:
        value = float(value)
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ValueError(f"{where} must be at least {meta['minimum']}, not {value!r}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ValueError(f"{where} must be at most {meta['maximum']}, not {value!r}")
    if meta.get("above") is not None and value <= meta["above"]:
        raise ValueError(f"{where} must be above {meta['above']}, not {value!r}")
    return value


def checked(cls, data, where: str, defaults: dict | None = None):
    """A config built from a user's dict (missing keys: `defaults`, then the field's
    default), every value checked; a ValueError says which key is wrong and why."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object")
    settable = {f.name: f for f in user_settings(cls)}
    unknown = sorted(set(data) - set(settable))
    if unknown:
        raise ValueError(
            f"{where}: unknown {cls.__name__} keys: {', '.join(unknown)} (known: "
            f"{', '.join(settable)})"
        )
    given = {**(defaults or {}), **data}
    return cls(**{n: check_value(settable[n], v, f"{where}.{n}") for n, v in given.items()})


# --- how each kind reads and mixes its experts ---------------------------------------


@dataclass
class LMRouting:
    """How a language-model mixture reads and mixes its experts (docs/routing.md)."""

    prefix_tokens: int = setting(
        32, "the router reads only these first tokens of a text; perplexity is scored "
        "after them", minimum=1, maximum=120,  # a text is scored up to its 128th token
    )  # fmt: skip
    layer: int = setting(-1, "the base's hidden layer the router reads (-1: the last)")
    router: str = setting(
        "learned", "learned (a trained gate), centroid or prefix-likelihood (training-free)",
        choices=("learned", "centroid", "prefix-likelihood"),
    )  # fmt: skip
    mixing: str = setting(
        "mix", "mix: the experts' next-token distributions; merge: their LoRA deltas "
        "(one pass)", choices=("mix", "merge"),
    )  # fmt: skip
    granularity: str = setting(
        "sequence", "sequence: a router reads each text's prefix and picks its experts; "
        "token: every layer routes each token among the experts' MLPs, the shared expert "
        "(the anchor) included, as a Mixtral layer does", choices=("sequence", "token"),
    )  # fmt: skip
    token_top_k: int = setting(
        2, "per-token mixtures: experts each token goes to in every layer", minimum=1
    )
    token_temperature: float = setting(
        0.005, "per-token mixtures: the router rows are the domains' mean hidden states "
        "divided by this times their mean squared norm (lower: sharper routing)", above=0,
    )  # fmt: skip
    tune_router: bool = setting(
        False, "per-token mixtures: tune the router rows on the router texts, experts frozen"
    )
    tune_steps: int = setting(
        30, "per-token mixtures: optimiser steps of that tuning", minimum=1, maximum=2000
    )


# What a classification gate reads of the frozen base pass: the last layer's mean, its
# [CLS] vector and the middle layer's mean; or the last layer's mean alone, as the experts.
GATE_FEATURES = ("mean-cls-middle", "mean")


@dataclass(kw_only=True)
class ClassifierRouting:
    """How a classification mixture's gate reads and mixes its experts (docs/routing.md).

    The defaults are the variant that beat the monolithic model on the multi-domain
    benchmark (docs/results.md, "Routing variants for head experts").
    """

    gate_features: str = setting(
        GATE_FEATURES[0], "what the gate reads of the base model: mean-cls-middle (the "
        "last layer's mean and [CLS] vector and the middle layer's mean, one pass) or mean "
        "(the last layer's mean, as the experts)", choices=GATE_FEATURES,
    )  # fmt: skip
    read_experts: bool = setting(
        True, "the gate also reads each head expert's confidence and entropy"
    )
    calibrate: bool = setting(
        True, "one temperature per expert, fitted on its domain's router data"
    )
    balance_domains: bool = setting(
        True, "the gate learns from every domain equally, whatever its size"
    )
