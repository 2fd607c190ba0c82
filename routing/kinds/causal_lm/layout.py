"""The tensor layout of a language-model expert: LoRA pairs on the linear layers of a
Llama-, Qwen2- or Mistral-style causal LM, named as PEFT names them."""

from __future__ import annotations

import re

from ...basemodels import BaseSpec
from ...lora_layout import check_lora_pairs
from ...peft_config import LoraSpec
from ...safetensors_header import ContractError, Header

MAX_LM_RANK = 64
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight (PEFT), or the same
# without PEFT's wrapper prefix.
LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?model\.layers\.(\d+)\."
    r"(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.lora_([AB])\.weight$"
)


def module_dims(module: str, spec: BaseSpec) -> tuple[int, int]:
    """(in_features, out_features) of a decoder layer's linear module."""
    d, i = spec.hidden_size, spec.intermediate_size
    q, kv = spec.q_size or d, spec.kv_size or d
    return {
        "q_proj": (d, q),
        "k_proj": (d, kv),
        "v_proj": (d, kv),
        "o_proj": (q, d),
        "gate_proj": (d, i),
        "up_proj": (d, i),
        "down_proj": (i, d),
    }[module.rsplit(".", 1)[-1]]


def check_lora_tensors(header: Header, lora: LoraSpec, base: BaseSpec | None) -> None:
    """Every tensor is a LoRA pair of a decoder layer's linear module, of the declared
    rank and target modules, shaped for the base model. Fills `lora.modules`."""
    if not 1 <= lora.r <= MAX_LM_RANK:
        raise ContractError("bad_lora", f"LoRA rank {lora.r} is outside 1..{MAX_LM_RANK}")
    for name in header.tensors:
        m = LORA_KEY.match(name)
        if m is None:
            raise ContractError(
                "unexpected_tensor",
                f"a language-model expert has no tensor named {name!r}: it holds only LoRA "
                f"A/B matrices of the decoder layers' {', '.join(MODULES)} (no embeddings, "
                "no lm_head, no modules_to_save)",
            )
        layer, module, ab = m.groups()
        canonical = f"model.layers.{int(layer)}.{module}"
        slot = lora.modules.setdefault(canonical, {})
        if ab in slot:
            raise ContractError("duplicate_tensor", f"two tensors hold LoRA {ab} of {canonical}")
        slot[ab] = name
    if not lora.modules:
        raise ContractError("missing_tensor", "the file holds no LoRA matrices")
    check_lora_pairs(header, lora, base, module_dims)
