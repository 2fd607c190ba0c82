"""Configuration dataclasses for gates, losses and training.

Every field has a documented default; configs serialise to plain dicts so a
composition folder records exactly how its gate was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class LossWeights:
    """Weights of the gate-training loss terms (see docs/routing.md).

    total = task + routing * L_route + balance * L_balance
            + entropy_example * H_example - entropy_batch * H_batch + z * L_z
    """

    routing: float = 0.5  # cross-entropy of the gate to the example's domain experts
    balance: float = 0.01  # Switch-style N * sum_i f_i P_i
    entropy_example: float = 0.01  # mean per-example routing entropy: lowered (confident)
    entropy_batch: float = 0.01  # entropy of the batch-average routing: raised (balanced)
    z: float = 0.001  # router z-loss, mean logsumexp(logits)^2


@dataclass
class GateConfig:
    """Shape and behaviour of the gate (router)."""

    hidden: int = 128  # hidden width of the gate MLP; 0 makes the gate linear
    temperature: float = 1.0  # softmax temperature over expert logits
    top_k: int = 2  # experts per example at inference; >= number of experts is dense
    train_top_k: int = 0  # top-k applied while training; 0 trains dense
    noise_std: float = 0.0  # std of Gaussian noise on logits while training (noisy top-k)


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
    """Build a config dataclass from a dict, refusing unknown keys."""
    data = dict(data or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    if cls is TrainConfig and isinstance(data.get("loss"), dict):
        data["loss"] = from_dict(LossWeights, data["loss"])
    return cls(**data)


@dataclass
class LMRouting:
    """How a language-model mixture reads and mixes its experts (docs/routing.md)."""

    prefix_tokens: int = 32  # the router reads only these; perplexity is scored after them
    layer: int = -1  # the base's hidden layer the router mean-pools (-1: the last)
    router: str = "learned"  # learned | centroid | prefix-likelihood (training-free)
    mixing: str = "mix"  # mix: p = sum_k g_k p_k; merge: one pass with sum_k g_k dW_k


# What a classification gate reads of the frozen base pass: the last layer's mean, its
# [CLS] vector and the middle layer's mean; or the last layer's mean alone, as the experts.
GATE_FEATURES = ("mean-cls-middle", "mean")


@dataclass(kw_only=True)
class ClassifierRouting:
    """How a classification mixture's gate reads and mixes its experts (docs/routing.md).

    The defaults are the variant that beat the monolithic model on the multi-domain
    benchmark (docs/results.md, "Routing variants for head experts").
    """

    gate_features: str = GATE_FEATURES[0]  # what the gate reads of the base pass
    read_experts: bool = True  # the gate also reads each head expert's confidence and entropy
    calibrate: bool = True  # one temperature per expert, fitted on its domain's router split
    balance_domains: bool = True  # router examples drawn with equal total weight per domain
