"""Files stored once per hub, by their content: the files of compositions' exports, which
repeat from version to version (a Mixtral export's shard of the base, the tokenizer, the
experts a new version keeps), live once under `blobs/sha256/<hex>`.

An export's manifest names each file's blob. On the local disk the export's folder also
holds a hard link to each blob, so that it stays a plain folder that loaders read in place
while its bytes are on the disk once; in a bucket only the blob is stored and readers go
through the manifest (`stored_name`).

Blobs that no manifest names are deleted by `collect` (`prune_exports` runs it), never
within MOECOLLAB_SHARED_GRACE_SECONDS of being stored or reused: a writer refreshes a blob
it reuses when half of that time has gone, so that a blob whose manifest is still being
written is never collected under it.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.files import File

from ..models import private_storage
from .blobs import local_path

BLOBS = "blobs/sha256"


def blob_key(sha256: str) -> str:
    return f"{BLOBS}/{sha256}"


def stored_name(prefix: str, name: str, entry: dict) -> str:
    """The storage's name for the file `name` of a manifest stored under `prefix`."""
    return entry.get("blob") or f"{prefix}/{name}"


def _age(key: str) -> float | None:
    """Seconds since the blob was stored or refreshed; None when there is none."""
    storage = private_storage()
    if not storage.exists(key):
        return None
    return time.time() - storage.get_modified_time(key).timestamp()


def put_blob(path: Path, sha256: str, link: str) -> str:
    """Store a local file (used up) as the blob of its content, once, and on the local
    disk hard-link it to the storage name `link`; its blob's key."""
    key = blob_key(sha256)
    blob = local_path(key)
    if blob is None:
        age = _age(key)
        if age is None or age > settings.MOECOLLAB_SHARED_GRACE_SECONDS / 2:
            with open(path, "rb") as f:  # stored, or refreshed (the bucket overwrites it)
                private_storage().save(key, File(f, name=sha256))
        return key
    blob.parent.mkdir(parents=True, exist_ok=True)
    target = local_path(link)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    for _ in range(2):
        try:
            os.utime(blob)  # refreshed: `collect` leaves it alone for the grace period
        except FileNotFoundError:
            os.replace(path, blob)  # the same disk as the staging folder: a rename
        try:
            os.link(blob, tmp)
            break
        except FileNotFoundError:  # collected between the check and the link: store again
            continue
        except OSError:  # a file system without hard links: a copy
            shutil.copyfile(blob, tmp)
            break
    os.replace(tmp, target)
    path.unlink(missing_ok=True)
    return key


def collect(referenced: set[str]) -> tuple[int, int]:
    """Delete the blobs that no manifest in `referenced` names and that are older than the
    grace period; (blobs deleted, bytes freed)."""
    storage = private_storage()
    try:
        _, names = storage.listdir(BLOBS)
    except FileNotFoundError:
        return 0, 0
    deleted = freed = 0
    for name in names:
        key = blob_key(name)
        if key in referenced:
            continue
        age = _age(key)
        if age is None or age < settings.MOECOLLAB_SHARED_GRACE_SECONDS:
            continue
        freed += storage.size(key)
        storage.delete(key)
        deleted += 1
    return deleted, freed


def blobs_of(manifest: dict | None) -> set[str]:
    return {e["blob"] for e in ((manifest or {}).get("files") or {}).values() if e.get("blob")}
