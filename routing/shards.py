"""A model folder's weights in shards by what changes from version to version, so that the
Hub and the hub's storage, which keep a file by its content, keep what versions share once
(the base's weights above all) and a new version sends and stores only what changed.

transformers (and llama.cpp's converter) read the shards through the standard
`model.safetensors.index.json`; each shard is deterministic (sorted keys).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

BASE_SHARD = "model-base.safetensors"
EXPERTS_SHARD = "model-experts.safetensors"
INDEX = "model.safetensors.index.json"


def split_shards(folder: Path, shards: dict[str, str], shard_of: Callable[[str], str]) -> None:
    """Rewrite the folder's single `model.safetensors` as `shards` (name → what it holds),
    each tensor in `shard_of(its key)`, with the index."""
    from safetensors.torch import load_file, save_file

    single = folder / "model.safetensors"
    tensors = load_file(single)
    groups: dict[str, dict] = {name: {} for name in shards}
    for key in sorted(tensors):
        groups[shard_of(key)][key] = tensors[key]
    for name, group in groups.items():
        save_file(group, folder / name, {"format": "pt"})
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
        "weight_map": {key: shard_of(key) for key in sorted(tensors)},
    }
    (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    single.unlink()


def base_and_experts(base_prefix: str) -> tuple[dict[str, str], Callable[[str], str]]:
    """Two shards for a composition whose base's tensors are named `<base_prefix>...`
    (an expert's LoRA inside the base's modules is named `...lora_...`): the base's
    weights, the same in every version, and everything the experts and the gate add."""

    def shard_of(key: str) -> str:
        return BASE_SHARD if key.startswith(base_prefix) and ".lora_" not in key else (
            EXPERTS_SHARD
        )  # fmt: skip

    shards = {BASE_SHARD: "the base model's weights (the same in every version)",
              EXPERTS_SHARD: "the experts, their adapters and the gate"}  # fmt: skip
    return shards, shard_of
