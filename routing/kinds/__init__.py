"""The kinds of mixture: one package each, one `MixtureKind` each (see interface.py).

`describe` tells what a kind is without loading it; `get_kind` imports a kind's
package when it is first asked for, so a process that never composes (the web
server) loads no torch.
"""

from __future__ import annotations

from importlib import import_module

from .interface import ExpertScore, KindInfo, MixtureKind

KINDS = {
    "classification": KindInfo(
        name="classification",
        title="Text classification",
        metric="accuracy",
        metric_title="Accuracy",
        higher_is_better=True,
        auto_class="AutoModelForSequenceClassification",
        pipeline_task="text-classification",
        example_input="The striker scored twice in the second half.",
        implementation="routing.kinds.classification.kind:CLASSIFICATION",
    ),
    "causal-lm": KindInfo(
        name="causal-lm",
        title="Language model",
        metric="perplexity",
        metric_title="Perplexity",
        higher_is_better=False,
        auto_class="AutoModelForCausalLM",
        pipeline_task="text-generation",
        example_input="The government announced",
        implementation="routing.kinds.causal_lm.kind:CAUSAL_LM",
    ),
}
_loaded: dict[str, MixtureKind] = {}


def describe(name: str) -> KindInfo:
    if name not in KINDS:
        raise ValueError(f"unknown kind of mixture {name!r}; known: {sorted(KINDS)}")
    return KINDS[name]


def get_kind(name: str) -> MixtureKind:
    info = describe(name)
    if name not in _loaded:
        module, _, attribute = info.implementation.partition(":")
        _loaded[name] = getattr(import_module(module), attribute)
    return _loaded[name]


__all__ = ["KINDS", "ExpertScore", "KindInfo", "MixtureKind", "describe", "get_kind"]
