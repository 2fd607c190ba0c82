"""Fixtures of the language-model tests: a tiny random Llama, two synthetic text domains,
and an expert trained on each (session-scoped: training takes a second)."""

import pytest

from devtools.tiny_lm import build_tiny_lm, lm_texts
from routing.config import GateConfig, LMRouting
from routing.data import Split, split_unsplit

PREFIX = 6
MAX_TOKENS = 24
PROMPTS = ["rain storm wet cloud", "cake sugar honey jam candy", "sun", "lemon lime tart the"]


@pytest.fixture(scope="session")
def tiny_lm_folder(tmp_path_factory) -> str:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture
def tiny_lm(tiny_lm_folder):
    from routing.kinds.causal_lm.base import CausalBase

    return CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS)


@pytest.fixture(scope="session")
def lm_domains():
    return {d: split_unsplit(d, Split(lm_texts(d, 300))) for d in ("weather", "food")}


@pytest.fixture(scope="session")
def lm_expert_files(tiny_lm_folder, lm_domains, tmp_path_factory):
    from routing.cache import TensorCache
    from routing.kinds.causal_lm.base import CausalBase
    from routing.kinds.causal_lm.training import train_lm_expert_file

    folder = tmp_path_factory.mktemp("lm-experts")
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS)
    cache = TensorCache(folder / "cache")
    files, summaries = {}, {}
    for name, data in lm_domains.items():
        files[name] = folder / f"{name}.safetensors"
        summaries[name] = train_lm_expert_file(
            base, data, files[name], cache=cache, prefix_tokens=PREFIX, r=4, epochs=3,
            batch_size=16, lr=1e-2, target_modules=("q_proj", "v_proj"),  # attention experts:
        )  # fmt: skip  # still accepted by sequence-level mixtures
    return files, summaries


def load_experts(base, files):
    from routing.kinds.causal_lm.experts import load_lm_expert

    return [load_lm_expert(files[d], base=base.spec) for d in ("weather", "food")]


def composed(base, files, data, cache, *, top_k=1, router="learned", mixing="mix"):
    from routing.kinds.causal_lm.composing import compose

    return compose(
        base,
        load_experts(base, files),
        ["weather", "food"],
        data,
        cache=cache,
        routing=LMRouting(prefix_tokens=PREFIX, router=router, mixing=mixing),
        gate_config=GateConfig(top_k=top_k, hidden=16),
    )


@pytest.fixture
def tiny_lm_export(tiny_lm, lm_expert_files, lm_domains, tmp_path):
    """A tiny language-model mixture exported as a transformers folder."""
    from routing.cache import TensorCache
    from routing.kinds.causal_lm.export import export_lm_composition

    files, _ = lm_expert_files
    result = composed(tiny_lm, files, lm_domains, TensorCache(tmp_path / "cache"))
    return export_lm_composition(result.model, tmp_path / "export")
