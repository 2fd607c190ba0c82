"""Stored files as local paths for the code that needs one (a safetensors reader, a
model loader).

Where the storage is the local file system the stored file is used in place. Anywhere
else (object storage) a worker fetches it once into its own cache under
`<MOECOLLAB_CACHE>/blobs/`: a file by its sha256, a folder (a composition, an export) by
the hash of its manifest, each checked against the hashes the hub recorded. The cache
keeps at most MOECOLLAB_BLOB_CACHE_BYTES (least recently used go first), so a worker can
start on an empty disk and never fills it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

CHUNK = 1 << 20


class BlobError(Exception):
    """A stored file that is missing or not what the hub recorded."""


def local_path(name: str, storage=None) -> Path | None:
    """Where a stored name lies on this machine's disk; None when the storage is not
    local (a bucket)."""
    try:
        return Path((storage or default_storage).path(name))
    except NotImplementedError:
        return None


def _root() -> Path:
    return Path(settings.MOECOLLAB_CACHE_DIR) / "blobs"


def local_copy(field, sha256: str) -> Path:
    """A local path with the stored file's bytes (see the module's docstring)."""
    local = local_path(field.name, field.storage)
    if local is not None:
        return local
    root = _root()
    target = root / sha256
    if target.is_file():
        os.utime(target)  # recently used
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{sha256}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        copy_checked(field.storage, field.name, tmp, sha256)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    trim(root, settings.MOECOLLAB_BLOB_CACHE_BYTES, keep=target)
    return target


def copy_checked(storage, name: str, target: Path, sha256: str) -> None:
    """Copy a stored file to a local path, checking its bytes against the hash the hub
    recorded when it stored them."""
    digest = hashlib.sha256()
    try:
        with storage.open(name, "rb") as src, open(target, "wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except FileNotFoundError as exc:
        raise BlobError(f"the stored file {name} is missing from the storage") from exc
    if digest.hexdigest() != sha256:
        raise BlobError(
            f"the stored file {name} has sha256 {digest.hexdigest()[:12]}…, "
            f"not the {sha256[:12]}… recorded at upload: the storage changed it"
        )


def cached_folder(
    key: str, fetch: Callable[[Path], None] | None = None, adopt: Path | None = None
) -> Path:
    """The cached folder `folder-<key>`: there already, or filled by `fetch(tmp)` (which
    raises on anything wrong), or `adopt`, a local folder moved in whole."""
    root = _root()
    target = root / f"folder-{key}"
    if target.is_dir():
        os.utime(target)
        if adopt is not None:
            shutil.rmtree(adopt, ignore_errors=True)
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".folder-{key}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        if adopt is not None:
            shutil.move(adopt, tmp)
        else:
            tmp.mkdir()
            fetch(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process of this worker fetched it first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    trim(root, settings.MOECOLLAB_BLOB_CACHE_BYTES, keep=target)
    return target


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def trim(root: Path, limit: int, keep: Path | None = None) -> None:
    """Delete the least recently used files and folders until the cache holds at most
    `limit` bytes (never `keep`, the entry just fetched)."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    stats = {p: (p.stat().st_mtime, _size(p)) for p in entries}
    total = sum(size for _, size in stats.values())
    for path in sorted(entries, key=lambda p: stats[p][0]):
        if total <= limit:
            break
        if path == keep:
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        total -= stats[path][1]
