"""The check every kind's LoRA experts share: each declared module holds one A/B pair of
the declared rank, shaped for the base model's layer."""

from __future__ import annotations

from collections.abc import Callable

from .basemodels import BaseSpec
from .peft_config import LoraSpec
from .safetensors_header import ContractError, Header


def check_lora_pairs(
    header: Header,
    lora: LoraSpec,
    base: BaseSpec | None,
    module_dims: Callable[[str, BaseSpec], tuple[int, int]],
) -> None:
    """`lora.modules` maps canonical names (`<stack>.<layers>.<n>.<module path>`) to their
    A and B tensors; without a base, only the rank and the pair's agreement are checked."""
    for canonical, slot in sorted(lora.modules.items()):
        for ab in "AB":
            if ab not in slot:
                raise ContractError("missing_tensor", f"LoRA {ab} of {canonical} is missing")
        module = canonical.split(".", 3)[3]
        if module.rsplit(".", 1)[-1] not in lora.target_modules:
            raise ContractError(
                "bad_lora",
                f"{canonical} is not among the declared target modules {lora.target_modules}",
            )
        a, b = header.tensors[slot["A"]].shape, header.tensors[slot["B"]].shape
        if base is not None:
            if int(canonical.split(".")[2]) >= base.num_layers:
                raise ContractError(
                    "wrong_base_model",
                    f"{canonical}: the base model {base.name} has {base.num_layers} layers",
                )
            fan_in, fan_out = module_dims(module, base)
        else:
            fan_in, fan_out = a[-1], b[0]
        if a != (lora.r, fan_in):
            raise ContractError(
                "bad_shape" if base is None or a[0] != lora.r else "wrong_base_model",
                f"tensor {slot['A']!r} has shape {list(a)}, expected {[lora.r, fan_in]} "
                f"(rank {lora.r} over the base model's {fan_in} inputs of {module})",
            )
        if b != (fan_out, lora.r):
            raise ContractError(
                "bad_shape" if base is None or b[1] != lora.r else "wrong_base_model",
                f"tensor {slot['B']!r} has shape {list(b)}, expected {[fan_out, lora.r]} "
                f"({fan_out} outputs of {module})",
            )
