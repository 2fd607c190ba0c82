"""Shared fixtures: a tiny randomly initialised BERT encoder and synthetic domains."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The test Hub server speaks the LFS protocol, not Xet.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from devtools.tiny import build_tiny_base, synthetic_domain  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> str:
    return build_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture
def tiny_encoder(tiny_base):
    from routing.kinds.classification.encoder import BaseEncoder

    return BaseEncoder(tiny_base, device="cpu", max_length=32)


@pytest.fixture
def cache(tmp_path):
    from routing.cache import TensorCache

    return TensorCache(tmp_path / "cache")


@pytest.fixture(scope="session")
def domains():
    return {"weather": synthetic_domain("weather"), "food": synthetic_domain("food")}
