"""Examples and the two deterministic ways of splitting them.

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

import hashlib
from dataclasses import dataclass, field

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
