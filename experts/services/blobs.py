"""Stored files as local paths for the code that needs one (a safetensors reader).

Where the storage is the local file system the stored file is used in place. Anywhere
else (object storage) a worker fetches the file once into its own content-addressed
cache, `<MOECOLLAB_CACHE>/blobs/<sha256>`, checked against the hash the hub recorded,
and keeps at most MOECOLLAB_BLOB_CACHE_BYTES there (least recently used go first), so a
worker can start on an empty disk and never fills it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from django.conf import settings

CHUNK = 1 << 20


class BlobError(Exception):
    """A stored file that is missing or not what the hub recorded."""


def local_copy(field, sha256: str) -> Path:
    """A local path with the stored file's bytes (see the module's docstring)."""
    try:
        return Path(field.storage.path(field.name))
    except NotImplementedError:  # not on this machine's disk
        pass
    root = Path(settings.MOECOLLAB_CACHE_DIR) / "blobs"
    target = root / sha256
    if target.is_file():
        os.utime(target)  # recently used
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{sha256}.{uuid.uuid4().hex[:8]}.tmp"
    digest = hashlib.sha256()
    try:
        with field.storage.open(field.name, "rb") as src, open(tmp, "wb") as out:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise BlobError(
                f"the stored file {field.name} has sha256 {digest.hexdigest()[:12]}…, "
                f"not the {sha256[:12]}… recorded at upload: the storage changed it"
            )
        os.replace(tmp, target)
    except FileNotFoundError as exc:
        raise BlobError(f"the stored file {field.name} is missing from the storage") from exc
    finally:
        tmp.unlink(missing_ok=True)
    trim(root, settings.MOECOLLAB_BLOB_CACHE_BYTES, keep=target)
    return target


def trim(root: Path, limit: int, keep: Path | None = None) -> None:
    """Delete the least recently used files until the folder holds at most `limit`
    bytes (never `keep`, the file just fetched)."""
    files = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    stats = {p: p.stat() for p in files}
    total = sum(s.st_size for s in stats.values())
    for path in sorted(files, key=lambda p: stats[p].st_mtime):
        if total <= limit:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= stats[path].st_size
