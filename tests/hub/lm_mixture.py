"""A language-model mixture on the tiny random Llama, with text domains, and experts made
the ways a contributor makes them (the hub's language-model tests share these)."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import json
from pathlib import Path

import pytest

from devtools.tiny_lm import build_tiny_lm, lm_texts, pretrain_tiny_lm
from experts.models import BaseModel, Domain, Mixture

PREFIX = 6


@pytest.fixture(scope="session")
def hub_lm_folder(tmp_path_factory) -> str:
    """The tiny Llama, pretrained on the synthetic domains: a base that predicts them a
    little, so a trained expert improves on it and noise makes it worse."""
    return pretrain_tiny_lm(build_tiny_lm(tmp_path_factory.mktemp("hub-lm")))


@pytest.fixture
def lm_mixture(db, media, hub_lm_folder, charlie):
    return make_lm_mixture(hub_lm_folder, charlie)


def make_lm_mixture(folder, charlie, *, slug="tiny-lm", lm=None, texts=160):
    """A language-model mixture on the base in `folder` with a weather and a food domain
    (`lm`: its language-model routing settings beyond the prefix)."""
    from experts.services.domains import import_domain_data
    from experts.services.mixtures import clean_routing
    from routing.basemodels import BaseSpec
    from routing.data import Split

    spec = BaseSpec.read(folder)
    base = BaseModel.objects.create(
        name=folder, kind="causal-lm", hidden_size=spec.hidden_size,
        num_layers=spec.num_layers, intermediate_size=spec.intermediate_size,
        q_size=spec.q_size, kv_size=spec.kv_size,
    )  # fmt: skip
    mixture = Mixture.objects.create(
        slug=slug,
        name="Tiny language model",
        base_model=base,
        kind="causal-lm",
        routing=clean_routing(
            {"lm": {"prefix_tokens": PREFIX, **(lm or {})}, "gate": {"hidden": 16}}, "causal-lm"
        ),  # fmt: skip
    )
    mixture.maintainers.add(charlie)
    for name in ("weather", "food"):
        domain = Domain.objects.create(mixture=mixture, name=name)
        import_domain_data(domain, Split(lm_texts(name, texts, words=60, seed=5)))
    return mixture


def trained_adapter(folder, hub_lm_folder, domain: str, *, epochs=2, texts=None):
    """A plain PEFT adapter folder of an expert trained on a domain's own texts (12 steps),
    or on `texts`."""
    from routing.kinds.causal_lm.base import CausalBase
    from routing.kinds.causal_lm.experts import load_lm_expert, save_lm_expert
    from routing.kinds.causal_lm.layout import MLP_PROJECTIONS
    from routing.kinds.causal_lm.training import train_lm_lora

    base = CausalBase(hub_lm_folder, device="cpu")
    texts = texts or lm_texts(domain, 96, words=60, seed=1)
    lora = train_lm_lora(base, texts, r=4, alpha=8, epochs=epochs, batch_size=16, lr=2e-2)
    path = folder.with_suffix(".safetensors")
    save_lm_expert(path, lora_tensors=lora, r=4, alpha=8, target_modules=list(MLP_PROJECTIONS),
                   base_model=hub_lm_folder, domain=domain)  # fmt: skip
    return load_lm_expert(path, base=base.spec).save_peft(folder, hub_lm_folder)


def upload_adapter(user, folder, domain, mixture="tiny-lm", name=None):
    from experts.models import Expert
    from tests.hub.conftest import api_client

    with open(folder / "adapter_model.safetensors", "rb") as f, \
            open(folder / "adapter_config.json", "rb") as config:  # fmt: skip
        response = api_client(user).post(
            "/api/experts/",
            {
                "mixture": mixture,
                "domain": domain,
                "name": name or folder.name,
                "file": f,
                "adapter_config": config,
            },  # fmt: skip
            format="multipart",
        )
    assert response.status_code == 201, response.content
    return Expert.objects.get(pk=response.json()["id"])


def adapter_config(folder) -> dict:
    return json.loads((folder / "adapter_config.json").read_text())


@pytest.fixture
def lm_stored(lm_mixture, alice, bob, hub_lm_folder, tmp_path, settings):
    """v1 of the tiny language-model mixture, stored and exported by the retrain service:
    alice's weather expert and bob's food expert, plain PEFT adapters, accepted."""
    settings.MOECOLLAB_CACHE_DIR = tmp_path / "cache"
    return compose_v1(lm_mixture, hub_lm_folder, (alice, bob), tmp_path)


def compose_v1(mixture, base_folder, users, tmp_path, make_adapter=trained_adapter):
    """v1 of `mixture`: one accepted expert per user, on weather and on food, each a
    plain PEFT adapter folder that `make_adapter(folder, base_folder, domain)` writes."""
    from experts.models import Expert, Job
    from experts.services import compositions
    from experts.services.uploads import LocalFile, UploadRequest, accept_upload

    for user, domain in zip(users, ("weather", "food"), strict=True):
        folder = Path(make_adapter(tmp_path / domain, base_folder, domain))
        expert = accept_upload(
            user,
            UploadRequest(
                mixture=mixture,
                domain=mixture.domains.get(name=domain),
                name=f"{domain} lora",
                description="",
                licence="apache-2.0",
                file=LocalFile(folder / "adapter_model.safetensors"),
                adapter_config=adapter_config(folder),
            ),
        )
        Expert.objects.filter(pk=expert.pk).update(status=Expert.Status.ACCEPTED)
    job = Job.objects.create(action=Job.Action.RETRAIN, mixture=mixture)
    return compositions.retrain(job.pk)
