"""A per-token composition exported as a standard Mixtral checkpoint: transformers loads it
with `AutoModelForCausalLM.from_pretrained(folder)`, no remote code.

A per-token composition is exactly a Mixtral model (docs/routing.md): every decoder layer's
MLP is a sparse MoE block whose expert e has the weights of the base MLP with the anchor
and expert e's LoRA merged (the shared expert: the anchor alone), whose router is the
composition's rows, top-k renormalised; attention, norms and embeddings are the base's
with the anchor merged. Mixtral computes the expert outputs from merged weights, the
composition from factored deltas: the logits agree to float32 rounding.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import torch

from ...model_card import CardInfo
from ...shards import INDEX, split_shards
from .token_model import TokenMoECausalLM

# The weights in three shards, so that a new version re-sends only what changed (the Hub
# and the hub's storage keep a file by its hash): what every version of a mixture shares
# (embeddings, attention, norms, head: the base with the anchor merged), the experts' MLPs,
# and the routers (the only shard a router tuning changes).
SHARDS = {
    "model-shared.safetensors": "the base with the anchor merged, outside the MLPs",
    "model-experts.safetensors": "every expert's MLP (the shared expert's first)",
    "model-router.safetensors": "every layer's router",
}
MIXTRAL_FILES = ("README.md", "config.json", "generation_config.json",
                 INDEX, *SHARDS)  # fmt: skip


def shard_of(key: str) -> str:
    if ".block_sparse_moe.gate." in key or ".mlp.gate." in key:
        return "model-router.safetensors"
    if ".block_sparse_moe.experts." in key or ".mlp.experts." in key:
        return "model-experts.safetensors"
    return "model-shared.safetensors"


def mixtral_config(model: TokenMoECausalLM):
    """The Mixtral configuration of a per-token composition of a Llama-family base."""
    from transformers import MixtralConfig

    c = model.base.model.config
    if getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
        raise ValueError("Mixtral has no biases: a base with attention or MLP biases cannot be "
                         "exported as a Mixtral checkpoint")  # fmt: skip
    tokenizer = model.base.tokenizer
    return MixtralConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads,
        head_dim=getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
        hidden_act=c.hidden_act,
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps,
        rope_parameters=dict(c.rope_parameters) if getattr(c, "rope_parameters", None) else None,
        tie_word_embeddings=False,  # the head is stored on its own
        num_local_experts=len(model.names),
        num_experts_per_tok=model.top_k,
        router_jitter_noise=0.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["MixtralForCausalLM"],
    )


@torch.no_grad()
def mixtral_state(model: TokenMoECausalLM) -> dict[str, torch.Tensor]:
    """The Mixtral weights: the anchored base's, each expert's MLP merged, the routers."""
    out = {}
    for key, tensor in model.base.weights.items():
        if ".mlp." not in key:
            out[key] = tensor
    if "lm_head.weight" not in out:  # tied to the embeddings in the base
        out["lm_head.weight"] = model.base.weights["model.embed_tokens.weight"]
    for i, layer in enumerate(model.layers):
        merged = {p: [] for p in ("gate_proj", "up_proj", "down_proj")}
        for deltas in layer.experts:
            for projection, stack in merged.items():
                weight = getattr(layer.mlp, projection).weight.detach()  # (out, in)
                pair = deltas.pairs.get(projection)
                if pair is not None:  # merged in float64: the nearest float32 to W + sBA
                    a, b = pair
                    exact = weight.double() + deltas.scale * (b.double() @ a.double())
                    weight = exact.to(weight.dtype)
                stack.append(weight.clone())
        prefix = f"model.layers.{i}.mlp"
        out[f"{prefix}.gate.weight"] = layer.router.detach()  # (E, D)
        gate_up = [torch.cat([g, u]) for g, u in zip(merged["gate_proj"], merged["up_proj"],
                                                      strict=True)]  # fmt: skip
        out[f"{prefix}.experts.gate_up_proj"] = torch.stack(gate_up)  # (E, 2I, D)
        out[f"{prefix}.experts.down_proj"] = torch.stack(merged["down_proj"])  # (E, D, I)
    return {k: v.detach().float().cpu().contiguous().clone() for k, v in out.items()}


def export_token_composition(model: TokenMoECausalLM, folder, card: CardInfo | None = None) -> Path:
    """Write the Mixtral model folder (weights, config, tokenizer, generation settings, model
    card); replaces `folder` atomically when done."""
    from transformers import GenerationConfig, MixtralForCausalLM

    from .card import token_model_card

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        config = mixtral_config(model)
        with torch.device("meta"):
            hf = MixtralForCausalLM(config)
        missing, unexpected = hf.load_state_dict(mixtral_state(model), strict=False, assign=True)
        missing = [k for k in missing if not k.endswith("inv_freq")]
        if missing or unexpected:
            raise ValueError(f"export does not fit: missing {missing[:3]}, extra {unexpected[:3]}")
        tokenizer = model.base.tokenizer
        hf.generation_config = GenerationConfig(
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id, max_new_tokens=64, do_sample=False,
        )  # fmt: skip
        hf.save_pretrained(tmp, max_shard_size="1000GB")  # one file, then split_shards
        split_shards(tmp, SHARDS, shard_of)
        tokenizer.save_pretrained(tmp)
        settings = json.loads((tmp / "tokenizer_config.json").read_text())
        settings["padding_side"] = "left"  # batched generation pads on the left
        (tmp / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        (tmp / "README.md").write_text(token_model_card(model, card or CardInfo(folder.name)))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
