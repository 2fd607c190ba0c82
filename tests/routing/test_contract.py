"""The expert file contract: round trips, and one clear rejection per kind of broken file."""

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from devtools.experts import make_head_file, make_lora_file, save_plain_peft_adapter
from routing.files import check_finite
from routing.kinds.classification.contract import check_expert_file
from routing.kinds.classification.experts import load_expert
from routing.safetensors_header import ContractError, read_header

LABELS = ["rainy", "sunny"]


def raw_safetensors(path, header: dict | str, data: bytes = b"") -> None:
    text = header if isinstance(header, str) else json.dumps(header)
    blob = text.encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def rejected(path, **kwargs) -> ContractError:
    with pytest.raises(ContractError) as info:
        check_expert_file(path, **kwargs)
    return info.value


def test_it_round_trips_a_head_expert(tmp_path, tiny_encoder):
    path = make_head_file(tmp_path / "h.safetensors", tiny_encoder, LABELS, "weather")
    header = check_expert_file(path, base=tiny_encoder.spec, labels=LABELS)
    assert (header.architecture, header.labels, header.domain, header.head_hidden) == (
        "head",
        LABELS,
        "weather",
        16,
    )
    expert = load_expert(path, base=tiny_encoder.spec, labels=LABELS)
    feats = torch.randn(3, tiny_encoder.hidden_size)
    assert expert.head(feats).shape == (3, 2)
    assert len(expert.sha256) == 64


def test_it_round_trips_a_lora_expert(tmp_path, tiny_encoder):
    path = make_lora_file(tmp_path / "l.safetensors", tiny_encoder, LABELS, "weather")
    header = check_expert_file(path, base=tiny_encoder.spec, labels=LABELS)
    assert header.architecture == "lora" and header.lora.r == 4
    assert len(header.lora.modules) == 2 * tiny_encoder.spec.num_layers
    expert = load_expert(path, base=tiny_encoder.spec, labels=LABELS)
    assert expert.classifier.weight.shape == (2, tiny_encoder.hidden_size)
    assert len(expert.lora_tensors) == 4 * tiny_encoder.spec.num_layers


def test_it_accepts_a_plain_peft_adapter_unchanged(tmp_path, tiny_encoder):
    save_plain_peft_adapter(tmp_path / "peft", tiny_encoder, len(LABELS))
    path = tmp_path / "peft" / "adapter_model.safetensors"
    header = check_expert_file(path, base=tiny_encoder.spec, labels=LABELS)
    assert (header.source, header.architecture, header.labels) == ("peft", "lora", LABELS)
    expert = load_expert(path, base=tiny_encoder.spec, labels=LABELS)
    assert len(expert.lora_tensors) == 4 * tiny_encoder.spec.num_layers


def test_a_peft_adapter_needs_the_domains_labels(tmp_path, tiny_encoder):
    path = make_lora_file(tmp_path / "l.safetensors", tiny_encoder, LABELS)
    header = read_header(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, tmp_path / "adapter_model.safetensors", {"format": "pt"})
    (tmp_path / "adapter_config.json").write_text(
        json.dumps(
            {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
        )
    )
    assert header.metadata["moecollab.kind"] == "lora"
    err = rejected(tmp_path / "adapter_model.safetensors", base=tiny_encoder.spec)
    assert err.code == "missing_labels"
    ok = check_expert_file(
        tmp_path / "adapter_model.safetensors", base=tiny_encoder.spec, labels=LABELS
    )
    assert ok.source == "peft"


@pytest.mark.parametrize(
    "case, code, words",
    [
        ("empty", "not_safetensors", "too short"),
        ("random", "not_safetensors", "header length"),
        ("pickle", "not_safetensors", "header"),
        ("truncated", "truncated", "truncated"),
        ("not_json", "not_safetensors", "not JSON"),
        ("duplicate", "duplicate_key", "twice"),
        ("nul_name", "bad_name", "control characters"),
        ("dtype", "bad_dtype", "'I64'"),
        ("gap", "bad_offsets", "contiguous"),
        ("huge_metadata", "bad_metadata", "at most"),
        ("no_metadata", "missing_metadata", "moecollab.format_version"),
        ("version", "bad_version", "version 1"),
        ("kind", "bad_kind", "'mlp'"),
        ("labels", "bad_labels", "JSON array"),
    ],
)
def test_it_rejects_each_broken_file_with_its_own_message(tmp_path, case, code, words):
    path = tmp_path / "x.safetensors"
    meta = {
        "moecollab.format_version": "1",
        "moecollab.kind": "head",
        "moecollab.base_model": "b",
        "moecollab.labels": '["a","b"]',
    }
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    if case == "empty":
        path.write_bytes(b"")
    elif case == "random":
        path.write_bytes(b"\xff" * 64)
    elif case == "pickle":
        torch.save({"w": torch.zeros(2)}, path)
    elif case == "truncated":
        raw_safetensors(
            path, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8
        )
    elif case == "not_json":
        raw_safetensors(path, "{not json")
    elif case == "duplicate":
        raw_safetensors(path, f'{{"w": {json.dumps(entry)}, "w": {json.dumps(entry)}}}', b"\0" * 8)
    elif case == "nul_name":
        raw_safetensors(path, {"w\u0000x": entry}, b"\0" * 8)
    elif case == "dtype":
        raw_safetensors(
            path, {"w": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8
        )
    elif case == "gap":
        raw_safetensors(
            path, {"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16
        )
    elif case == "huge_metadata":
        raw_safetensors(path, {"__metadata__": {"x": "y" * 70_000}, "w": entry}, b"\0" * 8)
    elif case == "no_metadata":
        raw_safetensors(path, {"w": entry}, b"\0" * 8)
    elif case == "version":
        raw_safetensors(
            path, {"__metadata__": {**meta, "moecollab.format_version": "9"}, "w": entry}, b"\0" * 8
        )
    elif case == "kind":
        raw_safetensors(
            path, {"__metadata__": {**meta, "moecollab.kind": "mlp"}, "w": entry}, b"\0" * 8
        )
    elif case == "labels":
        raw_safetensors(
            path, {"__metadata__": {**meta, "moecollab.labels": "a,b"}, "w": entry}, b"\0" * 8
        )
    err = rejected(path)
    assert err.code == code
    assert words in err.message


def _head_tensors(d=32, hidden=16, labels=2):
    return {
        "head.hidden.weight": torch.zeros(hidden, d),
        "head.hidden.bias": torch.zeros(hidden),
        "head.out.weight": torch.zeros(labels, hidden),
        "head.out.bias": torch.zeros(labels),
    }


def _head_meta(encoder, labels=LABELS):
    return {
        "moecollab.format_version": "1",
        "moecollab.kind": "head",
        "moecollab.base_model": encoder.name,
        "moecollab.labels": json.dumps(labels),
    }


def test_it_rejects_a_head_for_another_base_model(tmp_path, tiny_encoder):
    path = tmp_path / "x.safetensors"
    save_file(_head_tensors(), path, {**_head_meta(tiny_encoder), "moecollab.base_model": "bert"})
    err = rejected(path, base=tiny_encoder.spec)
    assert err.code == "wrong_base_model" and "'bert'" in err.message


def test_it_rejects_a_head_of_the_wrong_width(tmp_path, tiny_encoder):
    path = tmp_path / "x.safetensors"
    save_file(_head_tensors(d=384), path, _head_meta(tiny_encoder))
    err = rejected(path, base=tiny_encoder.spec)
    assert err.code == "wrong_base_model" and "384" in err.message and "32" in err.message


def test_it_rejects_labels_that_are_not_the_domains(tmp_path, tiny_encoder):
    path = make_head_file(tmp_path / "h.safetensors", tiny_encoder, ["rainy", "snowy"])
    err = rejected(path, base=tiny_encoder.spec, labels=LABELS)
    assert err.code == "wrong_labels"
    assert "missing ['sunny']" in err.message and "unknown ['snowy']" in err.message


@pytest.mark.parametrize(
    "change, code, words",
    [
        (lambda t: t.pop("head.out.bias"), "missing_tensor", "'head.out.bias'"),
        (lambda t: t.update({"extra": torch.zeros(1)}), "unexpected_tensor", "'extra'"),
        (lambda t: t.update({"head.out.weight": torch.zeros(3, 16)}), "bad_shape", "[2, 16]"),
    ],
)
def test_it_rejects_head_tensors_that_break_the_contract(
    tmp_path, tiny_encoder, change, code, words
):
    tensors = _head_tensors()
    change(tensors)
    path = tmp_path / "x.safetensors"
    save_file(tensors, path, _head_meta(tiny_encoder))
    err = rejected(path, base=tiny_encoder.spec)
    assert err.code == code and words in err.message


def test_it_rejects_a_lora_of_another_rank_or_layer(tmp_path, tiny_encoder):
    path = make_lora_file(tmp_path / "l.safetensors", tiny_encoder, LABELS)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, path, {**meta, "moecollab.lora_r": "8"})
    err = rejected(path, base=tiny_encoder.spec)
    assert err.code == "bad_shape" and "rank 8" in err.message
    tensors["base_model.model.encoder.layer.7.attention.self.query.lora_A.weight"] = torch.zeros(
        4, 32
    )
    tensors["base_model.model.encoder.layer.7.attention.self.query.lora_B.weight"] = torch.zeros(
        32, 4
    )
    save_file(tensors, path, meta)
    err = rejected(path, base=tiny_encoder.spec)
    assert err.code == "wrong_base_model" and "2 layers" in err.message


def test_it_rejects_a_lora_without_classifier(tmp_path, tiny_encoder):
    path = make_lora_file(tmp_path / "l.safetensors", tiny_encoder, LABELS)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if "classifier" not in k}
    save_file(tensors, path, meta)
    err = rejected(path, base=tiny_encoder.spec)
    assert err.code == "missing_tensor" and "classifier.weight" in err.message


def test_it_rejects_nan_and_inf_values(tmp_path, tiny_encoder):
    tensors = _head_tensors()
    tensors["head.out.weight"][0, 3] = float("nan")
    tensors["head.hidden.bias"][1] = float("inf")
    path = tmp_path / "x.safetensors"
    save_file(tensors, path, _head_meta(tiny_encoder))
    check_expert_file(path, base=tiny_encoder.spec)  # the header alone is fine
    with pytest.raises(ContractError) as info:
        check_finite(path)
    assert info.value.code == "not_finite"
    with pytest.raises(ContractError):
        load_expert(path, base=tiny_encoder.spec)
