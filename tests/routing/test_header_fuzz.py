"""Fuzzing the header reader and the contract check with Hypothesis.

Every input, structured or random, ends in a valid header or in the reader's
own `ContractError` with a code: no other exception, whatever the bytes.
The examples are derandomised, so a run is repeatable; each test prints how
many inputs it tried (bench/fuzz_header.py runs many more).
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings

from routing.basemodels import BaseSpec
from routing.kinds.classification.contract import check_expert_file
from routing.safetensors_header import ContractError, read_header
from tests.routing.header_strategies import EXAMPLES, headers, raw_files

SPEC = BaseSpec("some/base", hidden_size=8, num_layers=2, intermediate_size=16)
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def ends_well(path) -> str:
    """How the reader, then the contract check, ended: 'ok' or a ContractError's code.
    Any other exception fails the test."""
    stage = "header"
    try:
        read_header(path)
        stage = "contract"
        check_expert_file(path, base=SPEC, labels=["a", "b"], look_beside=False)
    except ContractError as exc:
        assert exc.code and str(exc)
        return f"{stage} {exc.code}"
    return "contract ok"


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "input.safetensors"


@pytest.fixture(scope="module")
def tally():
    counts: dict[str, int] = {}
    yield counts
    print(
        f"\nheader fuzzing: {sum(counts.values())} inputs, outcomes {dict(sorted(counts.items()))}"
    )


def tried(data: bytes, target, tally) -> None:
    target.write_bytes(data)
    outcome = ends_well(target)
    tally[outcome] = tally.get(outcome, 0) + 1


@FUZZ
@given(data=headers())
def test_structured_headers_end_in_a_header_or_a_contract_error(data, target, tally):
    tried(data, target, tally)


@FUZZ
@given(data=raw_files())
def test_random_bytes_end_in_a_header_or_a_contract_error(data, target, tally):
    tried(data, target, tally)


def file_with_header(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


@pytest.mark.parametrize(
    "text, code, words",
    [
        ('{"t": {"dtype": "F32", "shape": [' + "9" * 5000 + '], "data_offsets": [0, 4]}}',
         "not_safetensors", "5,000 digits"),
        ("[" * 200_000, "not_safetensors", "nests too deeply"),
        ('{"t": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}', "bad_dtype", "dtype"),
        ('{"__metadata__": {"moecollab.format_version": "1", "moecollab.kind": "head", '
         '"moecollab.base_model": "some/base", '
         '"moecollab.labels": "' + "[" * 60_000 + '"}}', "bad_labels", "nests too deeply"),
    ],
)  # fmt: skip
def test_the_inputs_that_once_raised_are_refused_with_a_code(tmp_path, text, code, words):
    path = tmp_path / "x.safetensors"
    path.write_bytes(file_with_header(text))
    with pytest.raises(ContractError) as refusal:
        read_header(path)
        check_expert_file(path, base=SPEC, labels=["a", "b"], look_beside=False)
    assert refusal.value.code == code and words in str(refusal.value)


def test_a_valid_header_still_reads(tmp_path):
    path = tmp_path / "ok.safetensors"
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 8)
    assert read_header(path).tensors["w"].shape == (2,)
