"""Small tensor helpers every kind of mixture shares."""

from __future__ import annotations

import torch


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present, else CPU, unless told otherwise."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average the token states that the attention mask keeps."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    summed = (hidden * mask).sum(dim=1)  # (B, D)
    return summed / mask.sum(dim=1).clamp(min=1.0)  # (B, D)
