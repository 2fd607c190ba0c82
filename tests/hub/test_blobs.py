"""A worker reads stored expert files that are not on its disk: fetched once into its
content-addressed cache, checked against the recorded sha256, the cache kept bounded."""

import os

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import Storage

from experts.services import resources
from experts.services.blobs import BlobError, local_copy
from tests.hub.test_experts_access import make_expert


class Bucket(Storage):
    """A storage whose files are not on this machine's disk (no `path()`), as a bucket."""

    def __init__(self):
        self.objects = {}

    def _open(self, name, mode="rb"):
        if name not in self.objects:
            raise FileNotFoundError(name)
        return ContentFile(self.objects[name], name=name)

    def _save(self, name, content):
        self.objects[name] = content.read()
        return name

    def exists(self, name):
        return name in self.objects

    def delete(self, name):
        self.objects.pop(name, None)

    def size(self, name):
        return len(self.objects[name])


@pytest.fixture
def remote(settings, tmp_path):
    """A storage with no local path, and an empty worker cache."""
    settings.MOECOLLAB_CACHE_DIR = tmp_path / "worker-cache"
    return Bucket()


def moved_to(storage, expert):
    """The expert's file as it would be in a bucket: the same bytes in `storage`."""
    with expert.file.open("rb") as f:
        name = storage.save(expert.file.name, ContentFile(f.read()))
    expert.file.storage, expert.file.name = storage, name
    return expert


def test_an_expert_in_remote_storage_is_fetched_once_and_loads(
    alice, mixture, expert_file, remote, settings, monkeypatch
):
    expert = moved_to(remote, make_expert(alice, mixture, expert_file))
    resources._experts.clear()
    loaded = resources.loaded_expert(expert)
    cached = settings.MOECOLLAB_CACHE_DIR / "blobs" / expert.sha256
    assert cached.is_file() and loaded.header.labels == list(expert.domain.labels)

    opened = []
    original = remote.open
    monkeypatch.setattr(remote, "open", lambda *a, **k: opened.append(a) or original(*a, **k))
    assert local_copy(expert.file, expert.sha256) == cached and opened == []  # no refetch


def test_a_stored_file_that_changed_or_vanished_is_refused_and_not_cached(
    alice, mixture, expert_file, remote, settings
):
    expert = moved_to(remote, make_expert(alice, mixture, expert_file))
    remote.delete(expert.file.name)
    remote.save(expert.file.name, ContentFile(b"not the uploaded bytes"))
    with pytest.raises(BlobError, match="not the .* recorded at upload"):
        local_copy(expert.file, expert.sha256)
    remote.delete(expert.file.name)
    with pytest.raises(BlobError, match="missing from the storage"):
        local_copy(expert.file, expert.sha256)
    assert os.listdir(settings.MOECOLLAB_CACHE_DIR / "blobs") == []  # no half files


def test_the_cache_keeps_its_size_dropping_the_least_recently_used(remote, settings):
    from experts.services.blobs import trim

    root = settings.MOECOLLAB_CACHE_DIR / "blobs"
    root.mkdir(parents=True)
    for age, name in enumerate(["old", "used", "new"]):
        (root / name).write_bytes(b"x" * 100)
        os.utime(root / name, (1000 + age, 1000 + age))
    os.utime(root / "used", (5000, 5000))  # read again lately
    trim(root, 250, keep=root / "new")
    assert sorted(os.listdir(root)) == ["new", "used"]
