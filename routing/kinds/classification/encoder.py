"""The frozen base encoder of a classification mixture: loading, pooled features, and its
content fingerprint."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ...basemodels import DEFAULT_BASE_MODEL, BaseSpec, resolve_base_model
from ...config import GATE_FEATURES
from ...tensors import mean_pool, pick_device

DEFAULT_MAX_LENGTH = 128
# What a gate reads from the frozen base pass (`ClassifierRouting.gate_features`):
# GATE_MEAN, the mean-pooled last layer, as the experts read it; GATE_LAYERS, that, the
# last layer's [CLS] vector and the middle layer's mean
GATE_LAYERS, GATE_MEAN = GATE_FEATURES


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
        out = self._run(batch, adapter=adapter, model=model)
        # Gates and experts run in float32 whatever dtype the base model loaded in.
        return (pool or mean_pool)(out.last_hidden_state, batch["attention_mask"]).float()

    def _run(self, batch, *, adapter=None, model=None, **options):
        if model is not None:
            return model(**batch, **options)
        if self._peft is None:
            if adapter is not None:
                raise KeyError(f"no LoRA adapter named {adapter!r}")
            return self.model(**batch, **options)
        if adapter is None:
            with self._peft.disable_adapter():
                return self.model(**batch, **options)
        self._peft.set_adapter(adapter)
        return self.model(**batch, **options)

    def gate_width(self, gate_features: str = GATE_MEAN) -> int:
        """How many features a gate reads from the base pass."""
        return self.hidden_size * (1 if gate_features == GATE_MEAN else 3)

    def base_pass(self, batch, gate_features: str = GATE_MEAN) -> tuple[torch.Tensor, torch.Tensor]:
        """One frozen base pass -> (the mean-pooled last layer (B, D) the head experts read,
        what the gate reads (B, D) or (B, 3D))."""
        if gate_features == GATE_MEAN:
            features = self.pooled(batch)
            return features, features
        if gate_features != GATE_LAYERS:
            raise ValueError(f"gate features are one of {GATE_FEATURES}, not {gate_features!r}")
        hidden = self._run(batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"]
        last, middle = hidden[-1], hidden[len(hidden) // 2]
        features = mean_pool(last, mask).float()  # (B, D)
        extra = [last[:, 0].float(), mean_pool(middle, mask).float()]
        return features, torch.cat([features, *extra], dim=-1)  # (B, 3D)

    @torch.inference_mode()
    def embed(
        self,
        texts: list[str],
        *,
        batch_size: int = 64,
        progress: bool | str = False,
        adapter: str | None = None,
        pool=None,
        gate_features: str | None = None,
    ) -> torch.Tensor:
        """Pooled features of every text, on the CPU, in input order; with `gate_features`,
        what a gate reads instead (`base_pass`).

        Texts are batched by length so that short texts are not padded to the
        longest one in the dataset; this is several times faster on mixed data.
        """
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        width = self.hidden_size if gate_features is None else self.gate_width(gate_features)
        out = torch.empty(len(texts), width)
        desc = progress if isinstance(progress, str) else "embedding"
        bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in idx])
            if gate_features is None:
                out[idx] = self.pooled(batch, adapter=adapter, pool=pool).cpu()
            else:
                out[idx] = self.base_pass(batch, gate_features)[1].cpu()
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
