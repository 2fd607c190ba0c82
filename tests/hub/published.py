"""A stored composition to publish and download, the Hub-compatible server, and running
the workers' task bodies here (the publishing and download tests share them)."""

from pathlib import Path

import pytest
from django.test import Client

from devtools.experts import make_lora_file
from devtools.hubserver import HubServer
from devtools.tiny import synthetic_domain, synthetic_rows
from experts.models import Composition, Expert, Job
from experts.services import publishing
from experts.services.publishing import enqueue_publish
from experts.services.resources import base_for, load_model
from experts.services.uploads import LocalFile, UploadRequest, accept_upload
from routing.cache import TensorCache
from routing.config import GateConfig
from routing.kinds.classification.composing import compose
from routing.kinds.classification.experts import load_expert
from routing.kinds.classification.training import train_expert_file

TOKEN = "hf_secret_token_for_tests_0123456789"
REPO = "charlie/weather-food"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hub_server(settings, hub_online):
    server = HubServer(tokens={TOKEN: "charlie"}).start()
    settings.MOECOLLAB_HF_TOKEN = TOKEN
    settings.MOECOLLAB_HF_ENDPOINT = server.url
    settings.MOECOLLAB_HF_NAMESPACE = "charlie"
    yield server
    server.stop()


def store_model(model, prefix: str) -> str:
    """A composition's files stored as a worker stores them (staged, then put)."""
    from experts.services.storage import put_folder, staging_folder

    staging = staging_folder()
    model.save(staging)
    put_folder(staging, prefix)
    return prefix


def _accepted(user, mixture, path, domain, name, licence):
    expert = accept_upload(
        user,
        UploadRequest(
            mixture=mixture,
            domain=mixture.domains.get(name=domain),
            name=name,
            description="",
            licence=licence,
            file=LocalFile(path),
        ),
    )
    Expert.objects.filter(pk=expert.pk).update(status=Expert.Status.ACCEPTED)
    return Expert.objects.get(pk=expert.pk)


@pytest.fixture
def stored(tmp_path, mixture, alice, bob, tiny_encoder, media, settings):
    """A composition as the workers store it: a trained head expert (alice) for weather,
    a LoRA expert (bob) for food, and a gate trained over both."""
    cache = TensorCache(tmp_path / "cache")
    data = {"weather": synthetic_domain("weather"), "food": synthetic_domain("food")}
    weather = tmp_path / "w.safetensors"
    train_expert_file(tiny_encoder, data["weather"], weather, cache=cache, epochs=40, lr=1e-2)
    food = make_lora_file(tmp_path / "f.safetensors", tiny_encoder, ["salty", "sour", "sweet"])
    experts = [
        _accepted(alice, mixture, weather, "weather", "sky reader", "mit"),
        _accepted(bob, mixture, food, "food", "taste buds", "apache-2.0"),
    ]
    encoder = base_for(mixture)
    loaded = [
        load_expert(e.file.path, base=encoder.spec, labels=e.domain.labels, name=e.name)
        for e in experts
    ]
    composed = compose(
        encoder,
        loaded,
        ["weather", "food"],
        data,
        cache=cache,
        gate_config=GateConfig(top_k=1, hidden=16),
    )
    routed, report = composed.model, composed.report
    folder = store_model(routed, "compositions/weather-food/v1")
    composition = Composition.objects.create(
        mixture=mixture,
        version=1,
        expert_shas=[e.sha256 for e in experts],
        folder=folder,
        is_current=True,
        metrics=report,
        contributions={
            str(experts[0].pk): {"drop": 0.4, "share": 0.55},
            str(experts[1].pk): {"drop": 0.3, "share": 0.45},
        },
    )
    composition.experts.set(experts)
    return composition


def texts_50():
    rows = synthetic_rows("weather", 25, seed=11) + synthetic_rows("food", 25, seed=12)
    return [text for text, _ in rows]


def publish_now(composition, sleeps=None):
    """Queue a publication as the site does, then run the worker's task body here."""
    job = enqueue_publish(composition)
    assert job is not None
    publishing.publish(job.pk, sleep=(sleeps.append if sleeps is not None else lambda s: None))
    return Composition.objects.get(pk=composition.pk), Job.objects.get(pk=job.pk)


def prepared_by_a_worker(composition, url):
    """A download whose export is missing waits (202) for the export job the request
    queued; run that job as a worker would."""
    from experts.services import exports

    waiting = Client().get(url)
    assert waiting.status_code == 202 and "Preparing the download" in waiting.content.decode()
    job = Job.objects.get(action=Job.Action.EXPORT, composition=composition, status="queued")
    exports.export(job.pk)


def hubs_own_model(composition):
    return load_model(composition)


def our_commits(server):
    return [c for c in server.commits(REPO) if c.title != "initial commit"]
