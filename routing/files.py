"""Writing and hashing the files experts and compositions are made of."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_safetensors(tensors: dict, path: str | os.PathLike, metadata: dict) -> None:
    """Write float32 tensors to `path` through a temporary file renamed into place, so a
    killed process never leaves half a file under the final name."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata)
    os.replace(tmp, path)


def check_finite(path: str | os.PathLike) -> None:
    """Load tensors one at a time and reject any NaN or Inf value."""
    import torch
    from safetensors import safe_open

    from .safetensors_header import ContractError

    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            tensor = f.get_tensor(name)
            bad = (~torch.isfinite(tensor)).sum().item()
            if bad:
                raise ContractError(
                    "not_finite", f"tensor {name!r} holds {bad} NaN or infinite values"
                )
