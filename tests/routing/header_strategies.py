"""Hypothesis strategies for safetensors files: well-formed, nearly so, and not at all."""

from __future__ import annotations

import json
import math
import os
import struct

from hypothesis import strategies as st

# How many inputs each fuzz test tries; raise it for a longer run.
EXAMPLES = int(os.environ.get("MOECOLLAB_FUZZ_EXAMPLES", "1500"))

DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", ""]
HEAD = ["head.hidden.weight", "head.hidden.bias", "head.out.weight", "head.out.bias"]
NAMES = HEAD + [
    "encoder.layer.0.attention.self.query.lora_A.weight",
    "base_model.model.encoder.layer.1.attention.self.value.lora_B.weight",
    "base_model.model.classifier.weight",
    "classifier.bias",
    "",
    "x\x00y",
    "a" * 400,
]
SIZES = {"F32": 4, "F16": 2, "BF16": 2}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def entries(draw):
    """Tensor entries, mostly well formed, with offsets laid end to end."""
    names = draw(
        st.lists(st.sampled_from(NAMES) | st.text(min_size=1, max_size=30), max_size=6, unique=True)
    )
    out, position = {}, 0
    for name in names:
        dtype = draw(st.sampled_from(["F32"] * 6 + DTYPES))
        shape = draw(st.lists(st.integers(min_value=0, max_value=9), max_size=3))
        size = math.prod(shape) * SIZES.get(dtype, 4)
        entry = {"dtype": dtype, "shape": shape, "data_offsets": [position, position + size]}
        position += size
        if draw(st.integers(0, 9)) == 0:  # break one field of one entry now and then
            entry[draw(st.sampled_from(["dtype", "shape", "data_offsets", "extra"]))] = draw(
                json_values
            )
        out[name] = entry
    return out, position


@st.composite
def head_entries(draw):
    """The four tensors of a head expert for an 8-wide base and two labels, with
    shapes right or slightly off."""
    hidden = draw(st.integers(1, 6))
    shapes = {
        "head.hidden.weight": [hidden, 8],
        "head.hidden.bias": [hidden],
        "head.out.weight": [2, hidden],
        "head.out.bias": [2],
    }
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(shapes)))
        shapes[name] = draw(st.lists(st.integers(0, 9), max_size=3))
    out, position = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape) * 4
        out[name] = {"dtype": "F32", "shape": shape, "data_offsets": [position, position + size]}
        position += size
    return out, position


@st.composite
def metadata(draw):
    """The contract's keys, with values right, wrong or absurd."""
    labels = draw(
        st.sampled_from(['["a", "b"]', '["a"]', '["a", "a"]', "[1, 2]", "not json", "[" * 50])
        | st.text(max_size=30)
    )
    meta = {
        "moecollab.format_version": draw(st.sampled_from(["1", "2", ""])),
        "moecollab.kind": draw(st.sampled_from(["head", "lora", "other"])),
        "moecollab.base_model": draw(st.sampled_from(["some/base", "other/base"])),
        "moecollab.labels": draw(st.just('["a", "b"]')) if draw(st.booleans()) else labels,
        "moecollab.lora_r": draw(st.sampled_from(["4", "0", "-1", "x", "9" * 30])),
        "moecollab.lora_alpha": draw(st.sampled_from(["8", "nan", "inf", "x"])),
        "moecollab.lora_target_modules": draw(
            st.sampled_from(['["query"]', "[]", '"query"', "{", "[" * 60, "[1]"])
        ),
    }
    if draw(st.booleans()):  # every key, as the contract asks
        meta["moecollab.format_version"], meta["moecollab.base_model"] = "1", "some/base"
    else:
        keep = draw(st.lists(st.sampled_from(sorted(meta)), unique=True))
        meta = {k: meta[k] for k in keep}
    if draw(st.booleans()):
        meta.update(draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)))
    if draw(st.integers(0, 19)) == 0:
        return draw(json_values)  # not a string-to-string map at all
    return meta


def _mutate(text: str, how: int) -> str:
    if how == 1:
        return text.replace("[", "[" + "9" * 30 + ", ", 1)  # an integer longer than a uint64
    if how == 2:
        return "[" * 5000 + text  # deep nesting
    if how == 3 and text.startswith("{") and len(text) > 2:
        return text[:-1] + ', "w": 1, "w": 2}'  # a duplicate key
    if how == 4:
        return text + "   "  # the padding safetensors allows
    return text


@st.composite
def headers(draw):
    """A whole file: length prefix, header JSON (sometimes mutated), data bytes."""
    tensors, data_size = draw(head_entries() if draw(st.booleans()) else entries())
    doc = dict(tensors)
    if draw(st.integers(0, 3)):
        doc["__metadata__"] = draw(metadata())
    text = _mutate(json.dumps(doc), draw(st.integers(0, 12)))
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))] + b"\xff"  # not UTF-8
    length = len(raw)
    if draw(st.integers(0, 9)) == 0:
        length = draw(st.sampled_from([0, 1, len(raw) + 1, 2**64 - 1, 16 * 1024 * 1024 + 1]))
    data_size += draw(st.sampled_from([0] * 8 + [-1, 1, 7]))
    return struct.pack("<Q", length) + raw + b"\0" * max(0, data_size)


@st.composite
def raw_files(draw):
    """Arbitrary bytes, half of them behind a length prefix that fits them."""
    body = draw(st.binary(max_size=300))
    if draw(st.booleans()):
        return struct.pack("<Q", len(body)) + body
    return draw(st.binary(max_size=16)) + body
