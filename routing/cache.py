"""On-disk cache of base features and expert outputs (safetensors files).

Features are keyed by the base model's content fingerprint and the dataset's
content hash, so a dataset is embedded once per base model however it is
named. Writes go to a temporary file that is renamed into place, so a killed
process never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .config import GateConfig, from_dict, to_dict
from .gate import Gate


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
        self._write(path, {"value": value})
        return value

    def _write(self, path: Path, tensors: dict, metadata: dict | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def trained_gate(
        self, parts: tuple[str, ...], train: Callable[[], tuple[Gate, dict]]
    ) -> tuple[Gate, dict, bool]:
        """(gate, training log, whether it was trained before): a gate trained on exactly
        the inputs that `parts` name (their cache keys and the settings) is trained once."""
        path = self.path("gates", *parts)
        if path.exists():
            self.hits += 1
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
                state = {k: f.get_tensor(k) for k in f.keys()}
            config = from_dict(GateConfig, json.loads(meta["config"]))
            side = int(meta.get("side_dim", 0))
            gate = Gate(int(meta["in_dim"]), int(meta["n_experts"]), config, side)
            gate.load_state_dict(state)
            return gate.eval().requires_grad_(False), json.loads(meta["log"]), True
        self.misses += 1
        gate, log = train()
        state = {k: v.detach().cpu().contiguous() for k, v in gate.state_dict().items()}
        meta = {
            "config": json.dumps(to_dict(gate.config)),
            "in_dim": str(gate.in_dim),
            "n_experts": str(gate.n_experts),
            "side_dim": str(gate.side_dim),
            "log": json.dumps(log),
        }
        self._write(path, state, meta)
        return gate, log, False

    def features(self, encoder, texts: list[str], *, progress: bool | str = False) -> torch.Tensor:
        """Pooled base features (n, D) for `texts`, computed once per base model and dataset."""
        return self.get_or_compute(
            "features",
            (encoder.fingerprint, texts_hash(texts)),
            lambda: encoder.embed(texts, progress=progress),
        )

    def gate_features(self, encoder, texts: list[str], how: str, *, progress=False):
        """What a gate reads from the base pass (`BaseEncoder.base_pass`) for `texts`; the
        mean-pooled features are the `features` entry itself."""
        if how == "mean":
            return self.features(encoder, texts, progress=progress)

        def compute() -> torch.Tensor:
            out = encoder.embed(texts, gate_features=how, progress=progress)
            # the first D columns are the mean-pooled features: one pass fills both entries
            mean = self.path("features", encoder.fingerprint, texts_hash(texts))
            if not mean.exists():
                self._write(mean, {"value": out[:, : encoder.hidden_size].contiguous()})
            return out

        return self.get_or_compute(
            "gate-features", (encoder.fingerprint, how, texts_hash(texts)), compute
        )

    def expert_outputs(
        self, expert_key: str, encoder, texts: list[str], compute: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """An expert's log-probabilities (n, L) on `texts`, computed once per expert (its
        `output_key`: the file and how it runs) and dataset."""
        return self.get_or_compute(
            "outputs", (expert_key, encoder.fingerprint, texts_hash(texts)), compute
        )
