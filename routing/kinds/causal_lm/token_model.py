"""A per-token language-model composition: the frozen base with the mixture's anchor merged,
a shared expert (the anchor alone, FlexOlmo's public expert) and LoRA experts on the MLP,
routed token by token in every layer as a Mixtral layer routes (`token_moe`). Attention is
the base's. Its folder holds the routers, the experts and the anchor file itself.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .base import CausalBase, continuation_log_probs
from .contract import check_token_modules
from .experts import LMExpert
from .generation import _decode, _left_padded
from .model import Generation, _expert
from .token_moe import balance_loss, deltas_of, install

TOKEN_COMPOSITION_FORMAT = "moecollab-lm-token-composition"
TOKEN_COMPOSITION_VERSION = 1
ANCHOR_CONFIG = "anchor_adapter_config.json"  # beside anchor.safetensors, for a PEFT anchor
SHARED = "shared"  # the shared expert's name: the base with the anchor merged


def check_token_expert(expert: LMExpert) -> None:
    """A ContractError (attention_modules_in_token_mixture) for an expert outside the MLP."""
    check_token_modules(expert.modules())


ROUTERS_FILE = "routers.safetensors"


class TokenMoECausalLM:
    """Route each token in every layer among the shared expert and the experts."""

    granularity = "token"

    def __init__(self, base: CausalBase, experts: list[LMExpert], expert_domains: list[str], *,
                 routers: torch.Tensor, top_k: int = 2, shared: bool = True,
                 prefix_tokens: int = 32, info: dict | None = None):  # fmt: skip
        if len(experts) != len(expert_domains):
            raise ValueError("one domain per expert is needed")
        for expert in experts:
            check_token_expert(expert)
        self.base, self.experts, self.expert_domains = base, experts, expert_domains
        self.domains = list(dict.fromkeys(expert_domains))
        self.shared, self.top_k, self.prefix_tokens = shared, top_k, prefix_tokens
        self.info = info or {}
        self.names = ([SHARED] if shared else []) + [e.name for e in experts]
        if routers.shape[1] != len(self.names):
            raise ValueError(f"router rows for {routers.shape[1]} experts, not {len(self.names)}")
        self.model = base.fresh_model().to(base.device).eval().requires_grad_(False)
        deltas = ([{}] if shared else []) + [
            deltas_of(e.lora_tensors, e.scale, base.device) for e in experts
        ]
        self.layers = install(self.model, routers.to(base.device).float(), deltas, top_k)

    @property
    def routers(self) -> torch.Tensor:
        """(L, E, D) every layer's router rows."""
        return torch.stack([layer.router.detach() for layer in self.layers]).cpu()

    # --- running it ---------------------------------------------------------------

    @torch.inference_mode()
    def token_log_probs(self, texts: list[str], *, batch_size: int = 8) -> torch.Tensor:
        """(n, max_tokens - prefix_tokens) log p of each text's tokens after its first
        `prefix_tokens` (scored as the sequence-level compositions are, whose router reads
        that prefix); NaN where a text has no token."""
        p = self.prefix_tokens
        out = torch.full((len(texts), self.base.max_tokens - p), float("nan"))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.base.tokenize([texts[i] for i in idx])
            logits = self.model(**batch).logits  # (B, L, V)
            lp = continuation_log_probs(logits, batch, p)
            out[idx, : lp.shape[1]] = lp.float().cpu()
        return out

    @torch.inference_mode()
    def token_routing(self, texts: list[str], *, batch_size: int = 8) -> torch.Tensor:
        """(L, E) the share of the tokens of `texts` whose top expert in each layer is e."""
        counts = torch.zeros(len(self.layers), len(self.names))
        for start in range(0, len(texts), batch_size):
            batch = self.base.tokenize(texts[start : start + batch_size])
            self.model(**batch)
            keep = batch["attention_mask"].reshape(-1).bool().cpu()
            for i, layer in enumerate(self.layers):
                top = layer.last_logits.argmax(-1).cpu()[keep]  # (n,)
                counts[i] += torch.bincount(top, minlength=len(self.names)).float()
        return counts / counts.sum(-1, keepdim=True).clamp(min=1)

    @torch.inference_mode()
    def generate(self, prompts: list[str], *, max_new_tokens: int = 40, do_sample=False,
                 temperature=1.0, top_p=1.0, seed=0, top_k=None) -> list[Generation]:  # fmt: skip
        """transformers' generate with its KV cache (a token's routing depends on that token
        only); each generated token's top expert, by most layers, is recorded."""
        batch = _left_padded(self.base, prompts)
        options = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
        if do_sample:
            options.update(temperature=temperature, top_p=top_p)
        else:
            options.update(temperature=None, top_p=None, top_k=None)
        seen: list[torch.Tensor] = []  # per step: (B, L) each row's top expert per layer

        def record(module, args, output):
            seen.append(torch.stack([layer.last_logits.argmax(-1) for layer in self.layers], -1))

        handle = self.model.model.norm.register_forward_hook(record)
        torch.manual_seed(seed)
        try:
            tokens = self.model.generate(
                **batch, pad_token_id=self.base.tokenizer.pad_token_id, **options
            )
        finally:
            handle.remove()
        new = tokens[:, batch["input_ids"].shape[1] :]  # (B, new), padded after the end
        texts = _decode(self.base, new)
        pad = self.base.tokenizer.pad_token_id
        out = []
        for b, (prompt, text) in enumerate(zip(prompts, texts, strict=True)):
            per_token = []  # pass s (the prompt's first) chose new token s at its last position
            for step in range(min(len(seen), int((new[b] != pad).sum()))):
                tops = seen[step].reshape(len(prompts), -1, len(self.layers))[b, -1]  # (L,)
                per_token.append(self.names[Counter(tops.tolist()).most_common(1)[0][0]])
            counts = Counter(per_token)
            total = sum(counts.values()) or 1
            experts = [(name, count / total) for name, count in counts.most_common()]
            pieces = _pieces(self.base, new[b][: len(per_token)])
            out.append(Generation(prompt, text, experts, tokens=per_token, pieces=pieces))
        return out

    def balance(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        return balance_loss(self.layers, mask)

    # --- files ----------------------------------------------------------------------

    def config(self) -> dict:
        pairs = zip(self.experts, self.expert_domains, strict=True)
        return {
            "format": TOKEN_COMPOSITION_FORMAT,
            "format_version": TOKEN_COMPOSITION_VERSION,
            "granularity": "token",
            "base_model": self.base.name,
            "base_revision": self.base.revision,
            "base_fingerprint": self.base.weights_fingerprint,
            "anchor": self.base.spec.anchor,
            "max_tokens": self.base.max_tokens,
            "hidden_size": self.base.hidden_size,
            "prefix_tokens": self.prefix_tokens,
            "top_k": self.top_k,
            "shared": self.shared,
            "experts": [e.entry(d) for e, d in pairs],
            "info": self.info,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for i, expert in enumerate(self.experts):
            tensors.update({f"experts.{i}.{k}": v for k, v in expert.lora_tensors.items()})
        # the routers apart from the experts: a router tuning changes only ROUTERS_FILE,
        # so a new version sends and stores only it (the Hub and the hub keep files by hash)
        for name, group in (
            ("model.safetensors", tensors),
            (ROUTERS_FILE, {"routers": self.routers}),
        ):
            group = {k: v.detach().float().cpu().contiguous() for k, v in group.items()}
            save_file(group, folder / f"{name}.tmp", {"format": "pt"})
            os.replace(folder / f"{name}.tmp", folder / name)
        if self.base.anchor is not None:  # the very file: experts name its sha256
            shutil.copyfile(self.base.anchor_path, folder / "anchor.safetensors")
            if self.base.anchor_config is not None:  # a PEFT anchor's own config
                (folder / ANCHOR_CONFIG).write_text(json.dumps(self.base.anchor_config) + "\n")
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder, *, base: CausalBase | None = None, device=None) -> TokenMoECausalLM:
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        if config.get("format") != TOKEN_COMPOSITION_FORMAT:
            raise ValueError(f"{folder} is not a {TOKEN_COMPOSITION_FORMAT} folder")
        anchor = folder / "anchor.safetensors" if config.get("anchor") else None
        peft = folder / ANCHOR_CONFIG
        if base is None:
            base = CausalBase(
                config["base_model"], revision=config.get("base_revision"),
                max_tokens=config["max_tokens"], device=device, anchor=anchor,
                anchor_config=json.loads(peft.read_text()) if peft.is_file() else None,
            )  # fmt: skip
        elif (base.weights_fingerprint, base.spec.anchor) != (
            config["base_fingerprint"], config.get("anchor", "")
        ):  # fmt: skip
            raise ValueError(
                f"this composition needs the base model {config['base_model']!r} with the "
                f"anchor {config.get('anchor', '')[:16] or 'none'}"
            )
        tensors = load_file(folder / "model.safetensors")
        if (folder / ROUTERS_FILE).is_file():  # else a folder saved with them in one file
            tensors.update(load_file(folder / ROUTERS_FILE))
        experts = [_expert(i, entry, config, tensors) for i, entry in enumerate(config["experts"])]
        return cls(
            base,
            experts,
            [e["domain"] for e in config["experts"]],
            routers=tensors["routers"],
            top_k=config["top_k"],
            shared=config["shared"],
            prefix_tokens=config["prefix_tokens"],
            info=config.get("info"),
        )


def tune_routers(model: TokenMoECausalLM, texts: list[str], *, steps: int = 30,
                 batch_size: int = 4, lr: float = 1e-2, balance: float = 0.01,
                 seed: int = 0) -> dict:  # fmt: skip
    """Tune every layer's router rows on `texts` (the domains' router texts) with the
    experts frozen: the composition's next-token loss plus Mixtral's load-balancing term.
    Returns what it did (steps, seconds, the first and last losses)."""
    import time

    from ...gate_training import shuffled_batches

    started = time.perf_counter()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    params = [layer.router for layer in model.layers]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    model.model.train()
    try:
        while len(losses) < steps:
            for idx in shuffled_batches(len(texts), batch_size, g):
                batch = model.base.tokenize([texts[i] for i in idx])
                labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
                nll = model.model(**batch, labels=labels).loss
                loss = nll + balance * model.balance(batch["attention_mask"])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(nll.detach()))
                if len(losses) == steps:
                    break
    finally:
        model.model.eval()
        for p in params:
            p.requires_grad_(False)
    return {
        "steps": len(losses),
        "seconds": time.perf_counter() - started,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }


def load_composition(folder, *, base: CausalBase | None = None, device=None):
    """A saved language-model composition of either granularity."""
    from .model import MoECausalLM

    config = json.loads((Path(folder) / "config.json").read_text())
    if config.get("format") == TOKEN_COMPOSITION_FORMAT:
        return TokenMoECausalLM.load(folder, base=base, device=device)
    return MoECausalLM.load(folder, base=base, device=device)


def _pieces(base, ids: torch.Tensor) -> list[str]:
    """The text each token adds, decoded with the tokens before it (a character that
    spans several byte-level tokens appears with the token that completes it)."""
    pieces, before = [], ""
    for s in range(len(ids)):
        now = base.tokenizer.decode(ids[: s + 1], skip_special_tokens=True)
        pieces.append(now[len(before) :] if now.startswith(before) else now)
        before = now
    return pieces
