"""A language-model mixture's anchor through the API, its validation job run in-process:
a maintainer uploads it, a worker judges it on every domain, accepted it is merged into
every expert's base; what is refused, and why, with nothing half-stored."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import io
import json
import zipfile

import pytest

from devtools.tiny_lm import lm_texts, save_lm_peft_adapter
from experts.models import Anchor, Domain, Expert, Job, Mixture
from routing.files import file_sha256
from tests.hub.conftest import api_client
from tests.hub.lm_mixture import (  # noqa: F401 (fixtures)
    PREFIX,
    hub_lm_folder,
    lm_mixture,
    trained_adapter,
)
from tests.hub.test_experts_access import client_for

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="session")
def tiny_anchor(hub_lm_folder, tmp_path_factory):
    """An anchor of the tiny Llama, trained on public-like text of both domains."""
    from routing.cache import TensorCache
    from routing.data import Split, split_unsplit
    from routing.kinds.causal_lm.base import CausalBase
    from routing.kinds.causal_lm.training import train_lm_expert_file

    folder = tmp_path_factory.mktemp("anchor")
    public = split_unsplit(
        "public",
        Split(lm_texts("weather", 64, words=60, seed=9) + lm_texts("food", 64, words=60, seed=9)),
    )
    path = folder / "anchor.safetensors"
    train_lm_expert_file(
        CausalBase(hub_lm_folder, device="cpu"),
        public,
        path,
        cache=TensorCache(folder / "c"),
        prefix_tokens=PREFIX,
        r=4,
        target_modules=ALL_LINEAR,
        epochs=2,
        batch_size=16,
        lr=1e-2,
        role="anchor",
        evaluate=False,
    )
    return path


def post_anchor(user, path, mixture="tiny-lm", adapter_config=None):
    with open(path, "rb") as f:
        body = {"file": f}
        if adapter_config is not None:
            body["adapter_config"] = io.BytesIO(json.dumps(adapter_config).encode())
            body["adapter_config"].name = "adapter_config.json"
        return api_client(user).post(f"/api/mixtures/{mixture}/anchor/", body, format="multipart")


def accept(user, path, mixture="tiny-lm"):
    """Upload an anchor and run its validation job here; the Anchor, judged."""
    from experts.services.anchors import validate_anchor

    answer = post_anchor(user, path, mixture)
    assert answer.status_code == 202, answer.content
    validate_anchor(answer.json()["job"])
    return Anchor.objects.get(pk=answer.json()["id"])


def post_expert(user, path, domain="weather", adapter_config=None, mixture="tiny-lm"):
    with open(path, "rb") as f:
        body = {"mixture": mixture, "domain": domain, "name": path.stem, "file": f}
        if adapter_config is not None:
            body["adapter_config"] = io.BytesIO(json.dumps(adapter_config).encode())
            body["adapter_config"].name = "adapter_config.json"
        return api_client(user).post("/api/experts/", body, format="multipart")


def test_an_anchor_is_judged_on_every_domain_and_becomes_the_mixtures(
    alice,
    charlie,
    lm_mixture,
    tiny_anchor,
    sent,
    settings,
    tmp_path,
    django_capture_on_commit_callbacks,
):
    settings.MOECOLLAB_CACHE_DIR = tmp_path / "cache"
    assert post_anchor(alice, tiny_anchor).status_code == 404  # not a maintainer
    with django_capture_on_commit_callbacks(execute=True):
        answer = post_anchor(charlie, tiny_anchor)
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["status"] == "uploaded" and body["sha256"] == file_sha256(tiny_anchor)
    assert body["download_url"] is None  # not accepted yet
    assert sent[-1] == ("workers.tasks.validate_anchor", {"args": [body["job"]], "queue": "lm"})
    again = post_anchor(charlie, tiny_anchor)
    assert again.status_code == 409 and again.json()["code"] == "anchor_pending"
    assert api_client().get("/api/mixtures/tiny-lm/anchor/").status_code == 404

    from experts.services.anchors import validate_anchor

    validate_anchor(body["job"])
    validate_anchor(body["job"])  # a second delivery changes nothing
    anchor = Anchor.objects.get(pk=body["id"])
    assert anchor.status == "accepted", anchor.report
    domains = anchor.report["metrics"]["domains"]
    assert set(domains) == {"weather", "food"}
    assert all(d["perplexity"] <= d["base_perplexity"] for d in domains.values())
    assert Job.objects.get(pk=body["job"]).status == "succeeded"

    record = api_client().get("/api/mixtures/tiny-lm/").json()  # anonymous
    assert record["anchor"]["sha256"] == anchor.sha256
    assert record["contract"]["anchor_sha256"] == anchor.sha256
    assert record["contract"]["peft_anchor_key"] == "moecollab_anchor_sha256"
    stored = api_client().get(record["anchor"]["download_url"])
    assert stored.status_code == 200
    import hashlib

    assert hashlib.sha256(b"".join(stored.streaming_content)).hexdigest() == anchor.sha256
    peft = api_client().get(record["anchor"]["peft_download_url"])
    names = zipfile.ZipFile(io.BytesIO(peft.content)).namelist()
    assert sorted(names) == ["adapter_config.json", "adapter_model.safetensors"]
    page = api_client().get("/m/tiny-lm/anchor/").content.decode()
    assert anchor.sha256 in page and 'id="anchor-scores"' in page
    mixture_page = api_client().get("/m/tiny-lm/").content.decode()
    assert 'id="contract-anchor"' in mixture_page and anchor.sha256 in mixture_page
    assert "merge_and_unload()" in mixture_page and "moecollab_anchor_sha256" in mixture_page


def test_the_peft_form_of_the_anchor_merges_to_the_weights_the_workers_use(
    charlie, lm_mixture, hub_lm_folder, tiny_anchor, sent, settings, tmp_path
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from routing.kinds.causal_lm.base import CausalBase

    settings.MOECOLLAB_CACHE_DIR = tmp_path / "cache"
    accept(charlie, tiny_anchor)
    archive = api_client().get("/m/tiny-lm/anchor/download/?as=peft")
    assert archive.status_code == 200
    zipfile.ZipFile(io.BytesIO(archive.content)).extractall(tmp_path / "anchor")
    model = AutoModelForCausalLM.from_pretrained(hub_lm_folder, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, tmp_path / "anchor").merge_and_unload()
    ours = CausalBase(hub_lm_folder, device="cpu", anchor=tiny_anchor)
    theirs = dict(merged.named_parameters())
    for name, weight in ours.model.named_parameters():
        assert torch.allclose(theirs[name], weight, atol=1e-6), name


def test_an_expert_must_build_on_the_mixtures_anchor(
    alice, charlie, lm_mixture, hub_lm_folder, tiny_anchor, sent, settings, tmp_path
):
    settings.MOECOLLAB_CACHE_DIR = tmp_path / "cache"
    anchor = accept(charlie, tiny_anchor)
    # a plain PEFT adapter trained on the base alone says nothing of the anchor
    plain = trained_adapter(tmp_path / "plain", hub_lm_folder, "weather", epochs=1)
    config = json.loads((plain / "adapter_config.json").read_text())
    answer = post_expert(alice, plain / "adapter_model.safetensors", adapter_config=config)
    assert answer.status_code == 400 and answer.json()["code"] == "wrong_anchor"
    assert "moecollab_anchor_sha256" in answer.json()["detail"]
    # one that names another anchor
    config["moecollab_anchor_sha256"] = "0" * 64
    answer = post_expert(alice, plain / "adapter_model.safetensors", adapter_config=config)
    assert answer.status_code == 400 and answer.json()["code"] == "wrong_anchor"
    assert "another anchor" in answer.json()["detail"]
    # the project's file, trained on the plain base, names none
    from routing.kinds.causal_lm.experts import load_lm_expert, save_lm_expert

    lora = load_lm_expert(plain / "adapter_model.safetensors", adapter_config=config)
    native = tmp_path / "native.safetensors"
    save_lm_expert(
        native,
        lora_tensors=lora.lora_tensors,
        r=4,
        alpha=8,
        target_modules=["gate_proj", "up_proj", "down_proj"],
        base_model=hub_lm_folder,
        domain="weather",
    )
    answer = post_expert(alice, native)
    assert answer.status_code == 400 and answer.json()["code"] == "wrong_anchor"
    assert Expert.objects.count() == 0  # nothing half-stored
    # naming the mixture's anchor, it is taken
    config["moecollab_anchor_sha256"] = anchor.sha256
    answer = post_expert(alice, plain / "adapter_model.safetensors", adapter_config=config)
    assert answer.status_code == 201, answer.content


def test_a_per_token_mixture_refuses_attention_experts_and_sequence_mixtures_tuning(
    alice, charlie, lm_mixture, hub_lm_folder, sent, tmp_path
):
    client = api_client(charlie)
    tune = client.patch(
        "/api/mixtures/tiny-lm/", {"routing": {"lm": {"tune_router": True}}}, format="json"
    )
    assert tune.status_code == 400 and "tune_router" in json.dumps(tune.json())
    token = client.patch(
        "/api/mixtures/tiny-lm/",
        {"routing": {"lm": {"granularity": "token", "tune_router": True, "prefix_tokens": PREFIX}}},
        format="json",
    )
    assert token.status_code == 200, token.content
    assert token.json()["contract"]["target_modules"] == ["gate_proj", "up_proj", "down_proj"]
    attention = save_lm_peft_adapter(tmp_path / "attn", hub_lm_folder, targets=("q_proj", "v_proj"))
    config = json.loads((attention / "adapter_config.json").read_text())
    answer = post_expert(alice, attention / "adapter_model.safetensors", adapter_config=config)
    assert answer.status_code == 400
    assert answer.json()["code"] == "attention_modules_in_token_mixture"
    assert "gate_proj, up_proj and down_proj" in answer.json()["detail"]


def test_the_anchor_is_frozen_once_the_mixture_has_experts_and_a_copy_takes_another(
    alice, charlie, lm_mixture, hub_lm_folder, tiny_anchor, sent, settings, tmp_path
):
    settings.MOECOLLAB_CACHE_DIR = tmp_path / "cache"
    plain = trained_adapter(tmp_path / "plain", hub_lm_folder, "weather", epochs=1)
    config = json.loads((plain / "adapter_config.json").read_text())
    assert (
        post_expert(alice, plain / "adapter_model.safetensors", adapter_config=config).status_code
        == 201
    )
    frozen = post_anchor(charlie, tiny_anchor)
    assert frozen.status_code == 409 and frozen.json()["code"] == "anchor_frozen"
    assert "/api/mixtures/tiny-lm/copy/" in frozen.json()["detail"]
    assert Anchor.objects.count() == 0
    page = client_for(charlie).get("/m/tiny-lm/anchor/").content.decode()
    assert 'id="anchor-frozen"' in page and 'id="copy-mixture"' in page
    assert (
        api_client(alice).post("/api/mixtures/tiny-lm/copy/", {}, format="json").status_code == 404
    )
    copy = api_client(charlie).post(
        "/api/mixtures/tiny-lm/copy/", {"name": "Tiny, anchored"}, format="json"
    )
    assert copy.status_code == 201, copy.content
    twin = copy.json()
    assert twin["slug"] == "tiny-lm-2" and twin["anchor"] is None
    assert twin["routing"] == api_client().get("/api/mixtures/tiny-lm/").json()["routing"]
    for domain in lm_mixture.domains.all():
        other = Domain.objects.get(mixture__slug="tiny-lm-2", name=domain.name)
        assert (other.router_count, other.eval_count) == (domain.router_count, domain.eval_count)
        assert other.eval_data.name != domain.eval_data.name  # a copy, not the same file
        assert other.eval_data.read() == domain.eval_data.read()
    assert Mixture.objects.get(slug="tiny-lm-2").experts.count() == 0
    assert post_anchor(charlie, tiny_anchor, mixture="tiny-lm-2").status_code == 202


def test_an_anchor_that_makes_a_domain_worse_or_is_no_anchor_is_refused(
    charlie, lm_mixture, hub_lm_folder, sent, settings, tmp_path
):
    from experts.services.anchors import validate_anchor
    from routing.kinds.causal_lm.experts import save_lm_expert

    settings.MOECOLLAB_CACHE_DIR = tmp_path / "cache"
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    answer = post_anchor(charlie, garbage)
    assert answer.status_code == 400 and answer.json()["code"] == "not_safetensors"
    noisy = save_lm_peft_adapter(tmp_path / "noisy", hub_lm_folder, targets=ALL_LINEAR, scale=1.0)
    config = json.loads((noisy / "adapter_config.json").read_text())
    answer = post_anchor(charlie, noisy / "adapter_model.safetensors", adapter_config=config)
    assert answer.status_code == 202, answer.content
    validate_anchor(answer.json()["job"])
    anchor = Anchor.objects.get(pk=answer.json()["id"])
    assert anchor.status == "rejected" and anchor.source == "peft"
    assert "may make no domain worse" in anchor.report["problems"][0]
    assert Mixture.objects.get(slug="tiny-lm").anchor is None
    # an expert's file is not an anchor
    from routing.kinds.causal_lm.experts import load_lm_expert

    lora = load_lm_expert(noisy / "adapter_model.safetensors", adapter_config=config)
    expert = tmp_path / "expert.safetensors"
    save_lm_expert(
        expert,
        lora_tensors=lora.lora_tensors,
        r=4,
        alpha=8,
        target_modules=list(ALL_LINEAR),
        base_model=hub_lm_folder,
    )
    answer = post_anchor(charlie, expert)
    assert answer.status_code == 400 and answer.json()["code"] == "not_an_anchor"
    # a mixture whose domains have no data yet
    Domain.objects.filter(mixture=lm_mixture).update(eval_count=0)
    answer = post_anchor(charlie, noisy / "adapter_model.safetensors", adapter_config=config)
    assert answer.status_code == 400 and answer.json()["code"] == "no_data"
    assert Anchor.objects.count() == 1  # the rejected one; nothing else was kept


def test_a_mixture_with_attention_experts_cannot_switch_to_per_token_routing(
    alice, charlie, lm_mixture, hub_lm_folder, sent, tmp_path
):
    attention = save_lm_peft_adapter(tmp_path / "attn", hub_lm_folder, targets=("q_proj", "v_proj"))
    config = json.loads((attention / "adapter_config.json").read_text())
    answer = post_expert(alice, attention / "adapter_model.safetensors", adapter_config=config)
    assert answer.status_code == 201, answer.content
    token = {"routing": {"lm": {"granularity": "token", "prefix_tokens": PREFIX}}}
    refused = api_client(charlie).patch("/api/mixtures/tiny-lm/", token, format="json")
    assert refused.status_code == 400
    message = json.dumps(refused.json())
    assert "adapt attention modules" in message and "q_proj, v_proj" in message
    assert Mixture.objects.get(slug="tiny-lm").routing["lm"]["granularity"] == "sequence"
    Expert.objects.filter(pk=answer.json()["id"]).update(status="retired")
    allowed = api_client(charlie).patch("/api/mixtures/tiny-lm/", token, format="json")
    assert allowed.status_code == 200, allowed.content
