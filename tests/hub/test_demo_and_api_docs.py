"""The demo mixture, the OpenAPI schema and its offline documentation pages."""

import pytest
from django.core.management import call_command
from django.test import Client

from experts.models import Domain, Expert, Mixture
from experts.services import demo


def test_seed_demo_creates_a_living_site_and_is_idempotent(db, media):
    call_command("seed_demo", per_domain=120)
    call_command("seed_demo", per_domain=120)
    mixture = Mixture.objects.get(slug="news-and-reviews")
    assert mixture.maintainers.filter(username="maintainer").exists()
    domains = {d.name: d for d in Domain.objects.filter(mixture=mixture)}
    assert set(domains) == {"bbc", "reuters8", "20news", "rotten"}
    bbc = domains["bbc"]
    assert bbc.labels == ["business", "entertainment", "politics", "sports", "tech"]
    assert bbc.router_count + bbc.eval_count == 120 and bbc.router_count > 30
    client = Client()
    assert client.login(username="contributor", password="demo-contributor")
    page = client.get("/").content.decode()
    assert "News and reviews" in page and "4 domains" in page
    page = client.get("/m/news-and-reviews/").content.decode()
    assert 'id="upload-form"' in page and "business, entertainment, politics" in page
    # evaluation data never reaches a page
    eval_text = bbc.eval_data.open("rb").readline().decode()
    assert eval_text.split('"text": "')[1][:40] not in page


@pytest.mark.minilm
@pytest.mark.smollm2
def test_seed_demo_trains_and_uploads_one_expert_per_domain_once(
    db, media, sent, django_capture_on_commit_callbacks, monkeypatch
):
    from experts.services.anchors import validate_anchor
    from routing.kinds.causal_lm.contract import check_lm_expert

    monkeypatch.setattr(demo, "LM_TRAIN", 4)  # texts per demo LoRA: the path, not the quality
    monkeypatch.setattr(demo, "LM_ANCHOR", 8)
    waits = []  # (mixture, experts uploaded by then): one first expert per mixture, then wait

    def wait(mixture, expert, say):
        waits.append((mixture.slug, expert.domain.name, Expert.objects.count()))

    def validate_now(mixture, anchor, say):  # what the worker does while the seeder waits
        waits.append((mixture.slug, "anchor", Expert.objects.count()))
        validate_anchor(anchor.jobs.get().pk)

    monkeypatch.setattr(demo, "wait_for_first_composition", wait)
    monkeypatch.setattr(demo, "wait_for_anchor", validate_now)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("seed_demo", per_domain=120, experts=True, train_limit=40,
                     first_compositions_first=True)  # fmt: skip
        call_command("seed_demo", per_domain=120, experts=True, train_limit=40)
    assert waits == [  # the anchor judged before the language model's first expert trains
        ("news-and-reviews", "20news", 1),
        ("news-and-code", "anchor", 1),
        ("news-and-code", "bbc", 2),
    ]
    lm = Mixture.objects.get(slug="news-and-code")
    assert lm.routing["lm"]["granularity"] == "token"
    assert lm.anchor is not None and lm.anchor.status == "accepted", lm.anchors.first().report
    assert lm.anchor.target_modules == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    experts = Expert.objects.filter(owner__username="contributor").select_related(
        "domain", "mixture"
    )
    by_mixture = {}
    for e in experts:
        by_mixture.setdefault(e.mixture.slug, []).append((e.domain.name, e.architecture, e.status))
    assert sorted(by_mixture["news-and-reviews"]) == [
        (name, "head", "uploaded") for name in ("20news", "bbc", "reuters8", "rotten")
    ]
    assert sorted(by_mixture["news-and-code"]) == [
        (name, "lora", "uploaded") for name in ("bbc", "python")
    ]
    for expert in lm.experts.all():  # MLP experts trained on the anchored base
        header = check_lm_expert(expert.file.path, base=lm.base_spec())
        assert header.anchor == lm.anchor.sha256
        assert set(header.lora.target_modules) == {"gate_proj", "up_proj", "down_proj"}
    assert (
        sorted(name for name, _ in sent)
        == ["workers.tasks.validate_anchor"] + ["workers.tasks.validate_expert"] * 6
    )


def test_the_openapi_schema_and_its_docs_are_served_offline(db):
    client = Client()
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    body = schema.content.decode()
    assert "/api/experts/" in body and "multipart/form-data" in body
    for path in ("/api/docs/", "/api/redoc/"):
        page = client.get(path)
        assert page.status_code == 200
        assert b"unpkg.com" not in page.content and b"cdn.jsdelivr.net" not in page.content
    from django.contrib.staticfiles import finders

    page = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_the_demo_waits_for_a_first_composition_but_not_for_ever(alice, mixture, expert_file):
    from experts.models import Composition
    from tests.hub.test_experts_access import make_expert

    expert = make_expert(alice, mixture, expert_file, status="validating")
    said = []
    demo.wait_for_first_composition(mixture, expert, said.append, timeout=0.3, poll=0.05)
    assert said[-1] == "no weather-food composition after 0 s; going on"
    Expert.objects.filter(pk=expert.pk).update(status="rejected")
    demo.wait_for_first_composition(mixture, expert, said.append, timeout=60, poll=0.05)
    assert said[-1] == "'expert 0' was not accepted (rejected); going on"
    Composition.objects.create(mixture=mixture, version=1, expert_shas=[expert.sha256])
    demo.wait_for_first_composition(mixture, expert, said.append, timeout=60, poll=0.05)
    assert said[-1].startswith("weather-food v1 composed")
