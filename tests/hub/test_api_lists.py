"""API lists filter by mixture, mixtures name their current composition, and a
composition's routing names its rows and columns."""

from experts.models import BaseModel, Composition, Domain, Mixture
from tests.hub.conftest import api_client
from tests.hub.test_experts_access import make_expert


def other_mixture():
    base = BaseModel.objects.first()
    other = Mixture.objects.create(slug="other", name="Other", base_model=base)
    Domain.objects.create(mixture=other, name="misc", labels=["a", "b"])
    return other


def test_lists_filter_by_mixture(alice, mixture, expert_file, media):
    other = other_mixture()
    mine = make_expert(alice, mixture, expert_file, status="accepted")
    Composition.objects.create(mixture=mixture, version=1, expert_shas=[mine.sha256])
    Composition.objects.create(mixture=other, version=1)
    client = api_client(alice)
    for path, expected in [
        ("/api/compositions/?mixture=weather-food", 1),
        ("/api/compositions/?mixture=other", 1),
        ("/api/compositions/", 2),
        ("/api/domains/?mixture=other", 1),
        ("/api/experts/?mixture=other", 0),
        ("/api/experts/?mixture=weather-food&domain=weather", 1),
        ("/api/experts/?mixture=weather-food&domain=food", 0),
        ("/api/mixtures/?mixture=other", 1),
        ("/api/compositions/?mixture=nothing-of-that-name", 0),
    ]:
        response = client.get(path)
        assert response.status_code == 200 and response.json()["count"] == expected, path
    assert client.get("/api/compositions/?mixture=other").json()["results"][0]["mixture"] == "other"


def test_a_mixture_names_its_current_composition(alice, mixture, media):
    assert api_client().get("/api/mixtures/weather-food/").json()["current_composition"] is None
    Composition.objects.create(mixture=mixture, version=1)
    v2 = Composition.objects.create(mixture=mixture, version=2, is_current=True)
    current = api_client().get("/api/mixtures/weather-food/").json()["current_composition"]
    assert (current["id"], current["version"]) == (v2.pk, 2)
    assert current["url"].endswith(f"/api/compositions/{v2.pk}/")


def test_a_compositions_routing_names_its_rows_and_columns(alice, mixture, expert_file, media):
    first = make_expert(alice, mixture, expert_file, status="accepted")
    second = make_expert(alice, mixture, expert_file, status="accepted", seed=1)
    composition = Composition.objects.create(
        mixture=mixture,
        version=1,
        is_current=True,
        expert_shas=[second.sha256, first.sha256],  # gate order
        metrics={
            # as the routing library writes them: PostgreSQL's jsonb keeps no key order,
            # so the matrix's row order is written down
            "domains": {"weather": {}, "food": {}},
            "domain_order": ["weather", "food"],
            "routing_matrix": [[0.9, 0.1], [0.2, 0.8]],
            "utilisation": {"load": [0.55, 0.45]},
        },
    )
    composition.experts.set([first, second])
    routing = api_client().get(f"/api/compositions/{composition.pk}/").json()["routing"]
    assert routing["domains"] == ["weather", "food"]
    assert [e["id"] for e in routing["experts"]] == [second.pk, first.pk]
    assert routing["experts"][0]["name"] == second.name
    assert routing["matrix"] == [[0.9, 0.1], [0.2, 0.8]] and routing["load"] == [0.55, 0.45]
