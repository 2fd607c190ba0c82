"""The tensor layout of a language-model expert: LoRA pairs on the linear layers of a
Llama-, Qwen2- or Mistral-style causal LM, named as PEFT names them."""

from __future__ import annotations

import re

from ...basemodels import BaseSpec
from ...lora_layout import check_lora_pairs
from ...peft_config import LoraSpec
from ...safetensors_header import ContractError, Header

MAX_LM_RANK = 64
# An anchor's router statistics: the mean hidden state of its public texts at each layer's
# MLP input (L, D) and their mean squared norm (L,): the shared expert's router row.
ROUTER_MEAN, ROUTER_MSQ = "moecollab.router.mean", "moecollab.router.msq"
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")  # a per-token mixture's experts
# The key of adapter_config.json where the PEFT recipe records the anchor's sha256.
PEFT_ANCHOR_KEY = "moecollab_anchor_sha256"
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


def check_router_stats(header: Header, base: BaseSpec | None) -> bool:
    """An anchor may carry its router statistics; both or neither, shaped for the base."""
    present = [n for n in (ROUTER_MEAN, ROUTER_MSQ) if n in header.tensors]
    if not present:
        return False
    if len(present) == 1:
        raise ContractError("missing_tensor", f"{present[0]} comes with its twin; one is missing")
    if base is not None:
        want = {ROUTER_MEAN: [base.num_layers, base.hidden_size], ROUTER_MSQ: [base.num_layers]}
        for name, shape in want.items():
            if list(header.tensors[name].shape) != shape:
                raise ContractError(
                    "bad_shape", f"{name} is {list(header.tensors[name].shape)}, not {shape}"
                )
    return True


def check_lora_tensors(header: Header, lora: LoraSpec, base: BaseSpec | None,
                       extra: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Every tensor is a LoRA pair of a decoder layer's linear module, of the declared
    rank and target modules, shaped for the base model (or one of `extra`). Fills
    `lora.modules`."""
    if not 1 <= lora.r <= MAX_LM_RANK:
        raise ContractError("bad_lora", f"LoRA rank {lora.r} is outside 1..{MAX_LM_RANK}")
    for name in header.tensors:
        if name in extra:
            continue
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
