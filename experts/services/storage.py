"""Where the files of compositions and their downloads live: in the hub's storage
(STORAGES["default"]: local files under MEDIA_ROOT, or an S3-compatible bucket), never
at a path a process assumes is shared. No model is loaded here.

A composition is a prefix of the storage, `compositions/<mixture>/v<N>-<token>/`:
- the kind's own files, then `files.json` (name → size, sha256), written last: a
  composition is stored once its manifest is there;
- its Hugging Face export under `hf/`, then `export.json` (the export's files, each
  stored once per hub by its content (see services.shared), and the size of its zip),
  written last: the download is ready once that manifest is there;
- its light export (no base weights) under `light/`, then `light.json`.

A zip is not stored: it is assembled from the stored files while it downloads (see
services.archives), so that a version's download does not store the base a second time.

Writers build the files in a local staging folder and `put_folder` them (moved into place
on the local disk, uploaded to a bucket). Readers get a local folder with `local_folder`:
the stored folder itself on the local disk, else a checked copy in the worker's bounded
cache (see services.blobs).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile

from routing.files import file_sha256

from ..models import Composition, Mixture, private_storage
from .blobs import BlobError, cached_folder, copy_checked, local_path
from .shared import put_blob, stored_name

MANIFEST = "files.json"
EXPORT_MANIFEST = "export.json"
LIGHT_MANIFEST = "light.json"
GGUF_MANIFEST = "gguf.json"
STALE_STAGING_SECONDS = 24 * 3600


def folder_name(mixture: Mixture, version: int) -> str:
    """A new composition's prefix in the storage (what `Composition.folder` stores); the
    token keeps two workers that race for one version from writing over each other."""
    return f"compositions/{mixture.slug}/v{version}-{uuid.uuid4().hex[:8]}"


def staging_folder() -> Path:
    """An empty local folder to build files in before `put_folder` (on the storage's own
    disk where it is local, so that putting them is a rename)."""
    local = local_path("")
    root = (local / ".staging") if local else Path(settings.MOECOLLAB_CACHE_DIR) / "staging"
    if root.is_dir():  # what a killed worker left behind a day ago
        for old in root.iterdir():
            try:
                stale = time.time() - old.stat().st_mtime > STALE_STAGING_SECONDS
            except FileNotFoundError:  # another writer's, stored and gone meanwhile
                continue
            if stale:
                shutil.rmtree(old, ignore_errors=True)
    folder = root / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder


def _manifest_of(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def put_file(path: Path, name: str) -> None:
    """Store a local file under `name` (moved on the local disk, uploaded to a bucket)."""
    storage = private_storage()
    target = local_path(name)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        return
    with open(path, "rb") as f:
        storage.save(name, File(f, name=path.name))


def put_json(name: str, data: dict) -> None:
    storage = private_storage()
    body = json.dumps(data, indent=1, sort_keys=True).encode()
    target = local_path(name)
    if target is not None:  # written beside and renamed: a reader never sees half of it
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(body)
        tmp.replace(target)
        return
    storage.save(name, ContentFile(body, name=Path(name).name))


def read_json(name: str) -> dict | None:
    storage = private_storage()
    try:
        with storage.open(name, "rb") as f:
            return json.loads(f.read())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def put_folder(
    folder: Path, prefix: str, manifest_name: str = MANIFEST, *, shared: bool = False,
    extra: dict | None = None,
) -> dict:  # fmt: skip
    """Store every file of a local folder under `prefix/` (`shared`: each once per hub by
    its content, see services.shared), then its manifest (last), with `extra` in it.

    The local folder is used up: moved into place, or, after an upload, kept as this
    worker's cached copy of what it stored (so the next reader here fetches nothing)."""
    files = _manifest_of(folder)
    manifest = {"files": files, **(extra or {})}
    for name, entry in files.items():
        if shared:
            entry["blob"] = put_blob(folder / name, entry["sha256"], f"{prefix}/{name}")
        else:
            put_file(folder / name, f"{prefix}/{name}")
    if local_path(prefix) is None:
        cached_folder(_key(manifest), adopt=folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    put_json(f"{prefix}/{manifest_name}", manifest)
    return manifest


def _key(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()


def delete_prefix(prefix: str, manifest: dict | None, manifest_name: str = MANIFEST) -> int:
    """Delete what `put_folder` stored (the manifest first); the bytes freed (a shared
    file's blob stays for `shared.collect`, which frees it once nothing names it)."""
    storage = private_storage()
    storage.delete(f"{prefix}/{manifest_name}")
    freed = 0
    for name, entry in ((manifest or {}).get("files") or {}).items():
        storage.delete(f"{prefix}/{name}")  # on the local disk, a shared file's link
        freed += 0 if entry.get("blob") else entry["size"]
    local = local_path(prefix)
    if local is not None and local.is_dir():  # and the folders left empty
        for folder in sorted((p for p in local.rglob("*") if p.is_dir()), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
    return freed


def local_folder(prefix: str, manifest_name: str = MANIFEST) -> Path:
    """A local folder with the files stored under `prefix/` (see the module docstring)."""
    manifest = read_json(f"{prefix}/{manifest_name}")
    if manifest is None:
        raise BlobError(f"nothing is stored under {prefix}/ (no {manifest_name})")
    local = local_path(prefix)
    if local is not None:
        return local
    return cached_folder(
        _key(manifest),
        fetch=lambda tmp: _fetch_all(prefix, manifest["files"], tmp),
    )


def _fetch_all(prefix: str, files: dict, into: Path) -> None:
    for name, entry in files.items():
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        copy_checked(private_storage(), stored_name(prefix, name, entry), into / name,
                     entry["sha256"])  # fmt: skip


# --- compositions and their exports -------------------------------------------------


def is_stored(composition: Composition) -> bool:
    """Whether the composition's own files are there (an export is made from them)."""
    return bool(composition.folder) and read_json(f"{composition.folder}/{MANIFEST}") is not None


def composition_folder(composition: Composition) -> Path:
    """The composition's own files, as a local folder (see `local_folder`)."""
    return local_folder(composition.folder)


@dataclass(frozen=True)
class ExportFormat:
    """One way a composition downloads: its folder under the composition's prefix, the
    manifest that says it is complete (written last) and what its download's name adds
    (a zip of the folder, or its one file where `zipped` is false)."""

    name: str
    folder: str
    manifest: str
    suffix: str
    zipped: bool = True


# The Hugging Face model folder with the base's weights in it; the experts, anchor and
# router with a config that names the base; one GGUF file for llama.cpp, written from the
# full folder when someone asks for it (docs/publishing.md#formats).
FULL = ExportFormat("full", "hf", EXPORT_MANIFEST, "")
LIGHT = ExportFormat("light", "light", LIGHT_MANIFEST, "-light")
GGUF = ExportFormat("gguf", "gguf", GGUF_MANIFEST, "-f16", zipped=False)
FORMATS = {f.name: f for f in (FULL, LIGHT, GGUF)}


def export_prefix(composition: Composition, fmt: ExportFormat = FULL) -> str:
    """Where the composition's export in `fmt` lies in the storage."""
    return f"{composition.folder}/{fmt.folder}"


def export_manifest(composition: Composition, fmt: ExportFormat = FULL) -> dict | None:
    """The export's manifest, once the export and its zip are stored; None before."""
    if not composition.folder:
        return None
    return read_json(f"{composition.folder}/{fmt.manifest}")


def export_entries(
    composition: Composition, fmt: ExportFormat = FULL, manifest: dict | None = None
) -> dict[str, dict]:
    """The export's files once it is complete (name in the model folder → its manifest
    entry, with `stored`, its name in the storage); {} otherwise. `manifest`: the export's
    manifest when the caller has read it already."""
    manifest = manifest or export_manifest(composition, fmt) or {}
    head = f"{fmt.folder}/"
    return {
        name[len(head) :]: {**entry, "stored": stored_name(composition.folder, name, entry)}
        for name, entry in sorted(manifest.get("files", {}).items())
        if name.startswith(head)
    }


def export_files(composition: Composition, fmt: ExportFormat = FULL) -> list[tuple[str, int]]:
    """The export's files (name, bytes) once it is complete; [] otherwise."""
    return [(name, e["size"]) for name, e in export_entries(composition, fmt).items()]


def export_folder(composition: Composition, fmt: ExportFormat = FULL) -> Path:
    """The stored export, as a local folder (see `local_folder`)."""
    return local_folder(composition.folder, fmt.manifest) / fmt.folder


def download_name(composition: Composition, fmt: ExportFormat = FULL) -> str:
    """The download's file name: the zip of the export, or its one file (a GGUF file)."""
    return f"{composition.mixture.slug}-v{composition.version}{fmt.suffix}.{_ending(fmt)}"


def _ending(fmt: ExportFormat) -> str:
    return "zip" if fmt.zipped else fmt.name


def zip_key(composition: Composition, fmt: ExportFormat = FULL) -> str:
    return f"{composition.folder}/{download_name(composition, fmt)}"


def download_size(composition: Composition, fmt: ExportFormat = FULL) -> int | None:
    """The bytes of the download (the export's zip, or its one file), once the export is
    stored (an export stored before zips were assembled on download lists its stored zip
    among its files)."""
    manifest = export_manifest(composition, fmt) or {}
    if not fmt.zipped:
        return sum(e["size"] for e in manifest.get("files", {}).values()) if manifest else None
    stored_zip = (manifest.get("files") or {}).get(download_name(composition, fmt))
    entry = manifest.get("zip") or stored_zip
    return entry["size"] if entry else None


def download_ready(composition: Composition, fmt: ExportFormat = FULL) -> bool:
    return export_manifest(composition, fmt) is not None
