"""The language-model expert contract (format 2): round trips, plain PEFT adapters, and
each refusal with its own message."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from devtools.tiny_lm import save_lm_peft_adapter
from routing.basemodels import BaseSpec
from routing.kinds.causal_lm.contract import check_lm_expert
from routing.kinds.causal_lm.experts import load_lm_expert, save_lm_expert
from routing.safetensors_header import ContractError
from tests.routing.lm_fixtures import tiny_lm, tiny_lm_folder  # noqa: F401 (fixtures)


def lora_tensors(spec: BaseSpec, r=4, modules=("self_attn.q_proj", "self_attn.v_proj")):
    from routing.kinds.causal_lm.layout import module_dims

    g = torch.Generator().manual_seed(0)
    out = {}
    for layer in range(spec.num_layers):
        for module in modules:
            fan_in, fan_out = module_dims(module, spec)
            key = f"model.layers.{layer}.{module}"
            out[f"{key}.lora_A.weight"] = torch.randn(r, fan_in, generator=g)
            out[f"{key}.lora_B.weight"] = torch.randn(fan_out, r, generator=g)
    return out


def write(path, spec, tensors=None, **meta):
    options = {
        "r": 4,
        "alpha": 8.0,
        "target_modules": ["q_proj", "v_proj"],
        "base_model": spec.name,
        "base_fingerprint": spec.fingerprint,
        "domain": "news",
        **meta,
    }
    save_lm_expert(path, lora_tensors=tensors or lora_tensors(spec), **options)
    return path


def refusal(path, spec, **options) -> ContractError:
    with pytest.raises(ContractError) as caught:
        check_lm_expert(path, base=spec, **options)
    return caught.value


def test_a_native_expert_round_trips(tmp_path, tiny_lm):
    spec = tiny_lm.spec
    tensors = lora_tensors(spec)
    path = write(tmp_path / "e.safetensors", spec, tensors)
    header = check_lm_expert(path, base=spec)
    assert (header.source, header.domain, header.lora.r, len(header.lora.modules)) == (
        "moecollab", "news", 4, 2 * spec.num_layers,
    )  # fmt: skip
    expert = load_lm_expert(path, base=spec)
    assert expert.lora_tensors.keys() == tensors.keys()
    assert all(torch.equal(expert.lora_tensors[k], v) for k, v in tensors.items())


def test_a_plain_peft_adapter_is_accepted_unchanged(tmp_path, tiny_lm, tiny_lm_folder):
    folder = save_lm_peft_adapter(tmp_path / "peft", tiny_lm_folder)
    header = check_lm_expert(folder / "adapter_model.safetensors", base=tiny_lm.spec)
    assert (header.source, header.lora.r, header.base_fingerprint) == ("peft", 4, "")
    again = load_lm_expert(folder / "adapter_model.safetensors", base=tiny_lm.spec)
    assert again.name == "peft"
    saved = load_file(folder / "adapter_model.safetensors")
    assert all(
        torch.equal(again.lora_tensors[k.removeprefix("base_model.model.")], v)
        for k, v in saved.items()
    )


def test_an_expert_saved_as_peft_loads_back_the_same(tmp_path, tiny_lm, tiny_lm_folder):
    spec = tiny_lm.spec
    native = load_lm_expert(write(tmp_path / "e.safetensors", spec), base=spec)
    folder = native.save_peft(tmp_path / "as-peft", tiny_lm_folder)
    back = load_lm_expert(folder / "adapter_model.safetensors", base=spec)
    assert all(torch.equal(back.lora_tensors[k], v) for k, v in native.lora_tensors.items())


def test_an_unknown_module_is_refused_by_name(tmp_path, tiny_lm):
    spec = tiny_lm.spec
    tensors = {**lora_tensors(spec), "model.embed_tokens.weight": torch.zeros(4, 4)}
    error = refusal(write(tmp_path / "e.safetensors", spec, tensors), spec)
    assert error.code == "unexpected_tensor" and "model.embed_tokens.weight" in str(error)


def test_wrong_shapes_are_refused_with_the_expected_shape(tmp_path, tiny_lm):
    spec = tiny_lm.spec
    tensors = lora_tensors(spec)
    tensors["model.layers.0.self_attn.v_proj.lora_B.weight"] = torch.zeros(spec.hidden_size, 4)
    error = refusal(write(tmp_path / "e.safetensors", spec, tensors), spec)
    assert error.code == "wrong_base_model"
    assert f"expected [{spec.kv_size}, 4]" in str(error) and "v_proj" in str(error)


def test_a_rank_over_the_cap_is_refused(tmp_path, tiny_lm):
    spec = tiny_lm.spec
    path = write(tmp_path / "e.safetensors", spec, lora_tensors(spec, r=4), r=65)
    error = refusal(path, spec)
    assert error.code == "bad_lora" and "1..64" in str(error)


def test_a_dtype_outside_the_allowlist_is_refused(tmp_path, tiny_lm):
    spec = tiny_lm.spec
    tensors = {k: v.to(torch.float64) for k, v in lora_tensors(spec).items()}
    path = tmp_path / "e.safetensors"
    save_file(tensors, path, {"format": "pt"})
    assert refusal(path, spec, adapter_config={}).code == "bad_dtype"


def test_nan_or_inf_is_refused_when_loading(tmp_path, tiny_lm):
    spec = tiny_lm.spec
    tensors = lora_tensors(spec)
    tensors["model.layers.1.self_attn.q_proj.lora_A.weight"][0, 0] = float("inf")
    path = write(tmp_path / "e.safetensors", spec, tensors)
    check_lm_expert(path, base=spec)  # the header is fine
    with pytest.raises(ContractError) as caught:
        load_lm_expert(path, base=spec)
    assert caught.value.code == "not_finite"


def test_another_base_is_refused_by_name_and_by_the_weights_fingerprint(tmp_path, tiny_lm):
    spec = tiny_lm.spec
    named = refusal(write(tmp_path / "a.safetensors", spec, base_model="someone/other-lm"), spec)
    assert named.code == "wrong_base_model" and "someone/other-lm" in str(named)
    other = write(tmp_path / "b.safetensors", spec, base_fingerprint="0" * 64)
    error = refusal(other, spec)
    assert error.code == "wrong_base_model" and "dequantised GGUF" in str(error)


def test_a_peft_adapter_for_another_task_or_with_saved_modules_is_refused(
    tmp_path, tiny_lm, tiny_lm_folder
):
    folder = save_lm_peft_adapter(tmp_path / "peft", tiny_lm_folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    path = folder / "adapter_model.safetensors"
    seq_cls = refusal(path, tiny_lm.spec, adapter_config={**config, "task_type": "SEQ_CLS"})
    assert seq_cls.code == "bad_task_type" and "CAUSAL_LM" in str(seq_cls)
    saved = refusal(path, tiny_lm.spec, adapter_config={**config, "modules_to_save": ["lm_head"]})
    assert saved.code == "bad_lora" and "lm_head" in str(saved)


def test_a_classification_expert_is_refused_as_another_format(tmp_path, tiny_lm):
    from routing.kinds.classification.experts import HeadExpert, save_head_expert

    path = tmp_path / "head.safetensors"
    save_head_expert(path, HeadExpert(32, 8, 2), labels=["a", "b"], base_model="x")
    error = refusal(path, tiny_lm.spec)
    assert error.code == "bad_version" and "classification expert" in str(error)
