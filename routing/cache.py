"""On-disk cache of base features and expert outputs (safetensors files).

Features are keyed by the base model's content fingerprint and the dataset's
content hash, so a dataset is embedded once per base model however it is
named. Writes go to a temporary file that is renamed into place, so a killed
process never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def default_cache_dir() -> Path:
    return Path(os.environ.get("MOECOLLAB_CACHE", Path.home() / ".cache" / "moecollab"))


def texts_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class TensorCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path(self, namespace: str, *parts: str) -> Path:
        key = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        return self.root / namespace / key[:2] / f"{key}.safetensors"

    def get_or_compute(
        self, namespace: str, parts: tuple[str, ...], compute: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        path = self.path(namespace, *parts)
        if path.exists():
            self.hits += 1
            return load_file(path)["value"]
        self.misses += 1
        value = compute().contiguous()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({"value": value}, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return value

    def features(self, encoder, texts: list[str], *, progress: bool | str = False) -> torch.Tensor:
        """Pooled base features (n, D) for `texts`, computed once per base model and dataset."""
        return self.get_or_compute(
            "features",
            (encoder.fingerprint, texts_hash(texts)),
            lambda: encoder.embed(texts, progress=progress),
        )

    def expert_outputs(
        self, expert_key: str, encoder, texts: list[str], compute: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """An expert's log-probabilities (n, L) on `texts`, computed once per expert (its
        `output_key`: the file and how it runs) and dataset."""
        return self.get_or_compute(
            "outputs", (expert_key, encoder.fingerprint, texts_hash(texts)), compute
        )
