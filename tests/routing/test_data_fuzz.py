"""Fuzzing the readers of a domain's data file with Hypothesis (a maintainer's upload).

Whatever the bytes, CSV or JSONL, labelled or texts alone, each reader ends in the
examples or in its own `DatasetError` that names the file: never another exception
(a RecursionError from deep nesting, `_csv.Error` from a huge field, a MemoryError
from a line the size of the file). The examples are derandomised, so a run repeats."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.data import DatasetError, read_table
from routing.kinds.causal_lm.corpora import read_texts

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pieces a hostile or broken file is made of, glued in any order.
HOSTILE = st.sampled_from(
    [
        b"[" * 50_000 + b"]" * 50_000,  # nesting without end
        b'{"text": ' + b"[" * 20_000 + b'"x"' + b"]" * 20_000 + b', "label": "a"}',
        b'{"text": "t", "label": ' + b"9" * 5_000 + b"}",  # a number without end
        b"x" * 200_000,  # one field over the CSV limit
        b'"unterminated, quote\n',
        b"\xff\xfe\x00",  # not UTF-8
        b"\x00",
        b"text,label\n",
        b'{"text": "t", "label": "a"}',
        b'{"text": null, "label": "a"}',
        b'{"text": "t", "label": true}',
        b'{"text": "t", "label": {"nested": 1}}',
        b'{"text": "' + b"y" * 120_000 + b'", "label": "b"}',
        b"",
        b"\n",
        b"\n\n",
        b",",
        b'"',
    ]
)
LINES = st.lists(st.one_of(HOSTILE, st.binary(max_size=64)), min_size=1, max_size=6)


def ends_well(read, data: bytes) -> None:
    try:
        read(data)
    except DatasetError as exc:
        assert str(exc)


@FUZZ
@given(lines=LINES, joiner=st.sampled_from([b"\n", b"", b",", b"\n\n"]))
def test_labelled_files_end_in_examples_or_a_dataset_error(lines, joiner):
    data = joiner.join(lines)
    ends_well(lambda d: read_table(d, fmt="jsonl"), data)
    ends_well(lambda d: read_table(d, fmt="csv"), b"text,label\n" + data)


@FUZZ
@given(lines=LINES, joiner=st.sampled_from([b"\n", b"", b"\n\n"]))
def test_text_corpora_end_in_texts_or_a_dataset_error(lines, joiner):
    data = joiner.join(lines)
    ends_well(lambda d: read_texts(d, "corpus.jsonl"), data)
    ends_well(lambda d: read_texts(d, "corpus.txt"), data)


@FUZZ
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {"text": st.one_of(st.text(max_size=40), st.integers(), st.none()),
             "label": st.one_of(st.text(max_size=12), st.integers(), st.booleans())}
        ),
        max_size=30,
    )
)  # fmt: skip
def test_structured_rows_end_in_examples_or_a_dataset_error(rows):
    data = "\n".join(json.dumps(r) for r in rows).encode()
    ends_well(lambda d: read_table(d, fmt="jsonl"), data)
