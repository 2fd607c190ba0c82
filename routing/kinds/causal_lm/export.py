"""Export a language-model composition as a Hugging Face model folder.

The folder holds `config.json` (MoECollabLMConfig with `auto_map`), the weights in two
shards with their index (`model-base.safetensors`: the base model's, the same in every
version; `model-experts.safetensors`: the router and every expert's LoRA pairs),
`generation_config.json`, the configuration and modeling code that
`trust_remote_code` loads (`remote_code/`), the tokenizer, each expert as a plain
PEFT adapter folder under `experts/`, the router alone (`router.json`,
`router.safetensors`) and a `README.md` model card.
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`, `generate()`
and `pipeline("text-generation")` then give the composition's own tokens.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import save_file

from ...config import to_dict
from ...model_card import CardInfo
from ...shards import INDEX, base_and_experts, split_shards
from .card import model_card
from .experts import expert_folder
from .model import CENTROID_TEMPERATURE, MoECausalLM

# The base's weights in a shard of their own, the same in every version (routing/shards.py).
SHARDS, SHARD_OF = base_and_experts("lm.")
LM_EXPORT_FILES = ("README.md", "config.json", INDEX, *SHARDS, "modeling_moecollab_lm.py")


def router_settings(model: MoECausalLM) -> dict:
    routing = model.routing
    settings = {
        "kind": routing.router,
        "prefix_tokens": routing.prefix_tokens,
        "layer": routing.layer,
        "top_k": model.top_k,
        "mixing": routing.mixing,
        "temperature": CENTROID_TEMPERATURE,
    }
    if model.gate is not None:
        settings.update(hidden=model.gate.config.hidden, temperature=model.gate.config.temperature)
    return settings


def _state(model: MoECausalLM, adapted: set[str]) -> dict[str, torch.Tensor]:
    """Tensor names of the transformers model: `lm.*` (the base; a linear layer an expert
    adapts sits under `.base`), `gate.*` or `centroids`, `lm.<module>.lora_A.<k>`."""
    out = {}
    for key, tensor in model.base.weights.items():
        module, _, leaf = key.rpartition(".")
        out[f"lm.{module}.base.{leaf}" if module in adapted else f"lm.{key}"] = tensor
    if "lm.lm_head.weight" not in out:  # tied to the embeddings: the export stores it itself
        out["lm.lm_head.weight"] = model.base.weights["model.embed_tokens.weight"]
    if model.gate is not None:
        out.update({f"gate.{k}": v for k, v in model.gate.state_dict().items()})
    if model.centroids is not None:
        out["centroids"] = model.centroids
    for k, expert in enumerate(model.experts):
        for key, tensor in expert.lora_tensors.items():
            module, ab = key.rsplit(".lora_", 1)  # "model.layers.0.self_attn.q_proj", "A.weight"
            out[f"lm.{module}.lora_{ab[0]}.{k}"] = tensor
    return {k: v.detach().float().cpu().contiguous().clone() for k, v in out.items()}


def export_lm_composition(model: MoECausalLM, folder, card: CardInfo | None = None) -> Path:
    """Write the model repository folder; replaces `folder` atomically when done."""
    from transformers import GenerationConfig

    from .remote_code.configuration_moecollab_lm import MoECollabLMConfig
    from .remote_code.modeling_moecollab_lm import MoECollabForCausalLM

    folder = Path(folder)
    base = model.base
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        card = card or CardInfo(title=folder.name)
        text_config = base.model.config.to_dict()
        for key in (
            "_name_or_path",
            "architectures",
            "transformers_version",
            "quantization_config",
        ):
            text_config.pop(key, None)
        text_config["tie_word_embeddings"] = False  # the head is stored on its own
        mixed = model.routing.mixing == "mix" and model.top_k > 1
        config = MoECollabLMConfig(
            text_config=text_config,
            experts=[e.entry(d) for e, d in zip(model.experts, model.expert_domains, strict=True)],
            router=router_settings(model),
            composition={"base_model": base.name, **card.provenance()},
            architectures=["MoECollabForCausalLM"],
            use_cache=not mixed,  # a mixture of next-token distributions recomputes
            pad_token_id=base.tokenizer.pad_token_id,
            eos_token_id=base.tokenizer.eos_token_id,
            bos_token_id=base.tokenizer.bos_token_id,
        )
        with torch.device("cpu"):
            hf = MoECollabForCausalLM(config)
        adapted = {m for e in model.experts for m in e.modules()}
        missing, unexpected = hf.load_state_dict(_state(model, adapted), strict=False)
        missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
        if missing or unexpected:
            raise ValueError(f"export does not fit: missing {missing[:3]}, extra {unexpected[:3]}")
        hf.generation_config = GenerationConfig(
            pad_token_id=config.pad_token_id,
            eos_token_id=config.eos_token_id,
            bos_token_id=config.bos_token_id,
            max_new_tokens=64,
            do_sample=False,
            use_cache=not mixed,
        )
        MoECollabLMConfig.register_for_auto_class()
        MoECollabForCausalLM.register_for_auto_class("AutoModelForCausalLM")
        hf.save_pretrained(tmp, max_shard_size="1000GB")  # one file, then split
        split_shards(tmp, SHARDS, SHARD_OF)
        base.tokenizer.save_pretrained(tmp)
        settings = json.loads((tmp / "tokenizer_config.json").read_text())
        settings["padding_side"] = "left"  # batched generation pads on the left
        (tmp / "tokenizer_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        for k, expert in enumerate(model.experts):
            expert.save_peft(tmp / "experts" / expert_folder(k, expert.name), base.name)
        _save_router(model, tmp)
        (tmp / "README.md").write_text(model_card(model, card), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _save_router(model: MoECausalLM, folder: Path) -> None:
    tensors = {}
    if model.gate is not None:
        tensors = {f"gate.{k}": v.detach().float().cpu().contiguous()
                   for k, v in model.gate.state_dict().items()}  # fmt: skip
    if model.centroids is not None:
        tensors["centroids"] = model.centroids.float().contiguous()
    if tensors:
        save_file(tensors, folder / "router.safetensors", {"format": "pt"})
    description = {
        **router_settings(model),
        "routing": to_dict(model.routing),
        "base_model": model.base.name,
        "experts": [
            {"folder": f"experts/{expert_folder(k, e.name)}", "name": e.name, "domain": d}
            for k, (e, d) in enumerate(zip(model.experts, model.expert_domains, strict=True))
        ],
        "how": "features = the base model's hidden state at `layer`, mean-pooled over the "
        "prompt's first `prefix_tokens` tokens; learned: softmax(gate(features) / temperature);"
        " centroid: softmax(cosine(features, centroids) / temperature); keep the top_k",
    }
    (folder / "router.json").write_text(json.dumps(description, indent=2) + "\n")
