"""The kinds of mixture: one package each, one `MixtureKind` each (see interface.py).

Every package under `routing/kinds/` with an `info.py` is a kind: its `INFO` says what
the kind is without loading it (`describe`); `get_kind` imports the kind's
implementation when it is first asked for, so a process that never composes (the web
server) loads no torch. A new kind is a new package here, nothing else.
"""

from __future__ import annotations

import pkgutil
from importlib import import_module
from pathlib import Path

from .interface import KINDS, ExpertScore, KindInfo, MixtureKind

DEFAULT_KIND = "classification"  # what a new mixture is unless it says otherwise


def _discover() -> dict[str, KindInfo]:
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg and (Path(__path__[0]) / module.name / "info.py").exists():
            info = import_module(f"{__name__}.{module.name}.info").INFO
            found[info.name] = info
    # the default first: forms and lists show it first
    return dict(sorted(found.items(), key=lambda item: (item[0] != DEFAULT_KIND, item[0])))


KINDS.update(_discover())
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


def choices() -> list[tuple[str, str]]:
    """(name, title) of every kind, the default first (a model field's choices)."""
    return [(info.name, info.title) for info in KINDS.values()]


def template_dirs() -> list[Path]:
    """The folders of the kinds' own page templates (`<package>/templates`)."""
    root = Path(__path__[0])
    return sorted(p for p in root.glob("*/templates") if p.is_dir())


__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "ExpertScore",
    "KindInfo",
    "MixtureKind",
    "choices",
    "describe",
    "get_kind",
    "template_dirs",
]
