"""Files stored once per hub by their content (experts/services/shared.py): what two
exports have in common is stored once, read through either, raced by 20 writers, and
freed only when nothing names it and its grace period is over."""

import os
import threading

import pytest

from experts.services.shared import blobs_of, collect
from experts.services.storage import delete_prefix, local_folder, put_folder, staging_folder

pytestmark = [pytest.mark.django_db]
BIG = os.urandom(1 << 20)


def stage(config: str):
    folder = staging_folder()
    (folder / "hf").mkdir()
    (folder / "hf" / "base.safetensors").write_bytes(BIG)
    (folder / "hf" / "config.json").write_text(config)
    return folder


def stored_bytes(root) -> int:
    """The bytes on the disk under `root`, each file counted once however many links."""
    inodes = {p.stat().st_ino: p.stat().st_size for p in root.rglob("*") if p.is_file()}
    return sum(inodes.values())


def test_what_two_exports_share_is_stored_once_and_freed_when_nothing_names_it(media, settings):
    one = put_folder(stage('{"v": 1}'), "compositions/m/v1-a", "export.json", shared=True)
    two = put_folder(stage('{"v": 2}'), "compositions/m/v2-b", "export.json", shared=True)
    base = "hf/base.safetensors"
    assert one["files"][base]["blob"] == two["files"][base]["blob"]
    assert one["files"]["hf/config.json"]["blob"] != two["files"]["hf/config.json"]["blob"]
    a = local_folder("compositions/m/v1-a", "export.json") / base
    b = local_folder("compositions/m/v2-b", "export.json") / base
    assert a.read_bytes() == b.read_bytes() == BIG
    assert a.stat().st_ino == b.stat().st_ino  # a folder of links to the one stored copy
    assert stored_bytes(media) < len(BIG) + 4096

    assert delete_prefix("compositions/m/v1-a", one, "export.json") == 0  # links only
    assert collect(blobs_of(two)) == (0, 0)  # within the grace period: kept
    settings.MOECOLLAB_SHARED_GRACE_SECONDS = 0
    assert collect(blobs_of(two)) == (1, len('{"v": 1}'))  # v1's config, not the base
    assert b.read_bytes() == BIG
    delete_prefix("compositions/m/v2-b", two, "export.json")
    assert collect(set()) == (2, len(BIG) + len('{"v": 2}'))
    assert stored_bytes(media) == 0


def test_twenty_writers_of_the_same_file_store_it_once(media):
    errors, manifests = [], []

    def write(i):
        try:
            manifests.append(put_folder(stage("{}"), f"compositions/m/v{i}-x", "export.json",
                                        shared=True))  # fmt: skip
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(manifests) == 20
    assert len({m["files"]["hf/base.safetensors"]["blob"] for m in manifests}) == 1
    for i in range(20):
        assert (local_folder(f"compositions/m/v{i}-x", "export.json") / "hf" /
                "base.safetensors").read_bytes() == BIG  # fmt: skip
    assert len(list((media / "blobs" / "sha256").iterdir())) == 2  # the base, the config
    assert stored_bytes(media / "blobs") == len(BIG) + len("{}")
    assert stored_bytes(media) < len(BIG) + 20 * 1024  # and the 20 manifests
