"""The frozen base causal LM of a language-model mixture: loading (a Hub id, a local folder
or a packaged GGUF file, dequantised to float32), the mixture's anchor merged into it, its
fingerprint, the router's prefix features and the per-token log-probabilities experts are
scored by."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from functools import cached_property
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ...basemodels import DEFAULT_LM_BASE, BaseSpec, gguf_file, resolve_base_model
from ...tensors import mean_pool, pick_device
from .lora import LoraBank

DEFAULT_MAX_TOKENS = 128  # a text is scored on its first this many tokens
DEFAULT_PREFIX_TOKENS = 32  # the router reads only these; perplexity is measured after them


class CausalBase:
    """A frozen causal LM with its tokenizer and every loaded expert's LoRA pairs.

    `name` is what experts and compositions record; `revision` pins a Hub commit. With
    `anchor` (a mixture's anchor adapter: the project's file or a PEFT adapter), the
    anchor is merged into the weights for good: every expert of the mixture is trained,
    scored and composed on the base with it merged.
    """

    def __init__(
        self,
        name: str = DEFAULT_LM_BASE,
        *,
        revision: str | None = None,
        device: str | torch.device | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        anchor: str | os.PathLike | None = None,
        anchor_config: dict | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name, self.revision, self.max_tokens = name, revision, max_tokens
        self.location = resolve_base_model(name)
        self.gguf_file = gguf_file(name)
        kwargs = {"revision": revision}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        self.tokenizer = AutoTokenizer.from_pretrained(self.location, **kwargs)
        if self.tokenizer.pad_token is None:  # SmolLM2 and Llama ship none
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.device = pick_device(str(device) if device is not None else None)
        model = AutoModelForCausalLM.from_pretrained(self.location, dtype=torch.float32, **kwargs)
        self.model = model.to(self.device).eval().requires_grad_(False)
        # The weights as loaded, before any LoRA layer wraps a module: fresh trainable
        # copies share these tensors instead of loading the model again.
        self.weights = dict(self.model.state_dict())
        self.bank = LoraBank(self.model)
        self.spec = BaseSpec.from_config(name, self.model.config, self.weights_fingerprint)
        self.anchor = None  # the merged anchor (an LMExpert), if any
        if anchor is not None:
            self.merge_anchor(anchor, anchor_config)

    @torch.no_grad()
    def merge_anchor(self, path: str | os.PathLike, adapter_config: dict | None = None) -> None:
        """Merge a mixture's anchor into the weights: W += (alpha / r) B A in every layer it
        adapts. The spec keeps the fingerprint of the weights as loaded (what experts name)
        and records the anchor's sha256; the cache fingerprint covers both."""
        from .experts import load_lm_expert

        if self.anchor is not None or self.bank.names:
            raise ValueError("an anchor is merged once, before any expert is loaded")
        # a PEFT anchor comes with its adapter_config.json (given, or beside the file)
        anchor = load_lm_expert(path, base=self.spec, adapter_config=adapter_config, name="anchor")
        for module in anchor.modules():
            a = anchor.lora_tensors[f"{module}.lora_A.weight"].to(self.device)  # (r, in)
            b = anchor.lora_tensors[f"{module}.lora_B.weight"].to(self.device)  # (out, r)
            self.model.get_submodule(module).weight += anchor.scale * (b @ a)  # (out, in)
        self.anchor, self.anchor_path, self.anchor_config = anchor, Path(path), adapter_config
        self.spec = dataclasses.replace(self.spec, anchor=anchor.sha256)
        self.__dict__.pop("fingerprint", None)  # cached before the merge: stale

    @property
    def hidden_size(self) -> int:
        return self.spec.hidden_size

    @cached_property
    def weights_fingerprint(self) -> str:
        """A content hash of the weights actually loaded: a dequantised GGUF file and the
        checkpoint it was made from are different bases."""
        h = hashlib.sha256()
        for key in sorted(self.weights):
            h.update(key.encode())
            h.update(self.weights[key].detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    @cached_property
    def fingerprint(self) -> str:
        """What every cached tensor depends on: the weights, the anchor, the tokenizer, the
        cut."""
        h = hashlib.sha256(self.weights_fingerprint.encode())
        if self.spec.anchor:
            h.update(b"anchor" + self.spec.anchor.encode())
        vocab = sorted(self.tokenizer.get_vocab().items())
        h.update(json.dumps({"max_tokens": self.max_tokens, "vocab": vocab}).encode())
        return h.hexdigest()

    def fresh_model(self, merged=None):
        """A trainable copy of the base, free of every expert's adapter, sharing the frozen
        weight tensors (it costs no memory for them); with `merged` (an LMExpert), that
        expert's deltas merged into copies of the weights it adapts."""
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(self.model.config)
        model.load_state_dict(self.weights, assign=True)
        # buffers outside the state dict (rotary frequencies) are the loaded model's too
        loaded = dict(self.model.named_buffers())
        for name, buffer in list(model.named_buffers()):
            if buffer.is_meta:
                owner, _, attr = name.rpartition(".")
                model.get_submodule(owner).register_buffer(attr, loaded[name], persistent=False)
        if getattr(model.config, "tie_word_embeddings", False):
            model.tie_weights()
        if merged is not None:
            with torch.no_grad():
                for module in merged.modules():
                    a = merged.lora_tensors[f"{module}.lora_A.weight"].to(self.device)
                    b = merged.lora_tensors[f"{module}.lora_B.weight"].to(self.device)
                    layer = model.get_submodule(module)
                    layer.weight = torch.nn.Parameter(
                        layer.weight + merged.scale * (b @ a), requires_grad=False
                    )
        return model

    def tokenize(self, texts: list[str], max_tokens: int | None = None) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_tokens or self.max_tokens,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items() if k != "token_type_ids"}

    @torch.inference_mode()
    def prefix_features(
        self, texts: list[str], *, prefix_tokens: int, layer: int = -1, batch_size: int = 16,
        progress: bool | str = False,
    ) -> torch.Tensor:  # fmt: skip
        """The frozen base's hidden state at `layer`, mean-pooled over each text's first
        `prefix_tokens` tokens (n, D): all the router may read."""
        out = torch.empty(len(texts), self.hidden_size)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        desc = progress if isinstance(progress, str) else "prefix features"
        bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in idx], prefix_tokens)
            with self.bank.off():
                hidden = self.model.model(**batch, output_hidden_states=True).hidden_states
            out[idx] = mean_pool(hidden[layer], batch["attention_mask"]).float().cpu()
            bar.update(len(idx))
        bar.close()
        return out

    @torch.inference_mode()
    def token_log_probs(
        self, texts: list[str], *, prefix_tokens: int, expert: str | None = None,
        merged: tuple[list[str], torch.Tensor] | None = None, batch_size: int = 8,
        progress: bool | str = False,
    ) -> torch.Tensor:  # fmt: skip
        """log p(x_t | x_<t) of each text's tokens after its prefix, under the base model,
        with one expert's adapter, or with `merged` = (experts, weights (n, K)) mixing
        their LoRA deltas row by row: (n, max_tokens - prefix_tokens), NaN where a text
        has no token."""
        width = self.max_tokens - prefix_tokens
        out = torch.full((len(texts), width), float("nan"))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        desc = progress if isinstance(progress, str) else "scoring"
        bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenize([texts[i] for i in idx])
            if merged is not None:
                context = self.bank.mixed(merged[0], merged[1][idx])
            else:
                context = self.bank.only(expert, len(idx))
            with context:
                logits = self.model(**batch).logits  # (B, L, V)
            lp = continuation_log_probs(logits, batch, prefix_tokens)  # (B, L - P)
            out[idx, : lp.shape[1]] = lp.float().cpu()
            bar.update(len(idx))
        bar.close()
        return out


def continuation_log_probs(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], prefix_tokens: int
) -> torch.Tensor:
    """log p of each true token after the prefix (B, L - P); NaN at padding."""
    ids, mask = batch["input_ids"], batch["attention_mask"]  # (B, L)
    lp = torch.log_softmax(logits[:, :-1].float(), -1)  # (B, L-1, V): predicts ids[:, 1:]
    picked = lp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, L-1)
    picked = picked[:, prefix_tokens - 1 :]  # predictions of tokens P, P+1, ...
    keep = mask[:, prefix_tokens:].bool()  # (B, L-P)
    return torch.where(keep, picked, torch.full_like(picked, float("nan")))


@torch.inference_mode()
def prefix_log_likelihood(
    base: CausalBase, texts: list[str], *, prefix_tokens: int, expert: str | None = None,
    batch_size: int = 16,
) -> torch.Tensor:  # fmt: skip
    """log p(prefix) of each text under the base or one expert: the sum over the prefix's
    tokens after its first (n,). Branch-Train-Merge routes by it; it reads the prefix only."""
    out = torch.zeros(len(texts))
    for start in range(0, len(texts), batch_size):
        idx = list(range(start, min(start + batch_size, len(texts))))
        batch = base.tokenize([texts[i] for i in idx], prefix_tokens)
        with base.bank.only(expert, len(idx)):
            logits = base.model(**batch).logits  # (B, P, V)
        lp = continuation_log_probs(logits, batch, 1)  # (B, P - 1)
        out[idx] = torch.nan_to_num(lp, nan=0.0).sum(-1).float().cpu()
    return out
