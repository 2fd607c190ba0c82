"""Fixtures of the routing tests: three head experts trained on synthetic domains."""

import pytest

from devtools.tiny import synthetic_domain
from routing.kinds.classification.experts import load_expert
from routing.kinds.classification.training import train_expert_file


@pytest.fixture
def trained(tmp_path, tiny_encoder, cache):
    data = {name: synthetic_domain(name) for name in ("weather", "food", "sport")}
    experts = []
    for i, name in enumerate(data):
        path = tmp_path / f"{name}.safetensors"
        summary = train_expert_file(
            tiny_encoder,
            data[name],
            path,
            architecture="head",
            cache=cache,
            seed=i,
            epochs=40,
            hidden=32,
            lr=1e-2,
        )
        assert summary["eval_accuracy"] > 0.9, summary
        experts.append(
            load_expert(path, base=tiny_encoder.spec, labels=data[name].labels, name=name)
        )
    return data, experts
