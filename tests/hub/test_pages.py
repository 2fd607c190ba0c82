"""Leaderboard, composition page, review queue and domain data pages."""

from django.test import Client

from experts.charts import bars, heatmap, line
from experts.models import Composition
from tests.hub.test_experts_access import client_for, make_expert


def make_composition(mixture, experts, version=1, accuracy=0.8):
    c = Composition.objects.create(
        mixture=mixture,
        version=version,
        expert_shas=[e.sha256 for e in experts],
        is_current=True,
        metrics={
            "overall": {"n": 10, "accuracy": accuracy, "macro_f1": 0.7},
            "domains": {"weather": {"n": 10, "accuracy": accuracy, "macro_f1": 0.7}},
            "utilisation": {
                "load": [1.0 / len(experts)] * len(experts),
                "entropy": 1.0,
                "under_1pct": 0,
            },
            "routing_matrix": [[1.0 / len(experts)] * len(experts)],
        },
        contributions={
            str(e.pk): {"drop": 0.05 * (i + 1), "share": 0.5} for i, e in enumerate(experts)
        },
    )
    c.experts.set(experts)
    return c


def test_the_leaderboard_ranks_accepted_experts_and_charts_versions(
    alice, bob, mixture, expert_file, media
):
    a = make_expert(alice, mixture, expert_file, status="accepted", seed=1)
    b = make_expert(bob, mixture, expert_file, status="accepted", seed=2)
    hidden = make_expert(alice, mixture, expert_file, status="rejected", seed=3)
    a.metrics = {"accuracy": 0.7, "macro_f1": 0.6}
    a.save()
    b.metrics = {"accuracy": 0.9, "macro_f1": 0.8}
    b.save()
    make_composition(mixture, [a], version=1, accuracy=0.7)
    Composition.objects.update(is_current=False)
    make_composition(mixture, [a, b], version=2, accuracy=0.85)
    page = Client().get("/m/weather-food/leaderboard/").content.decode()
    weather = page.split('<h2 id="weather">')[1]
    by_score = weather.split("By held-out score")[1].split("By contribution")[0]
    assert by_score.index("expert 2") < by_score.index("expert 1")
    by_contribution = weather.split("By contribution")[1]
    assert by_contribution.index("expert 2") < by_contribution.index("expert 1")
    assert hidden.name not in page
    assert "<svg" in page and "v1: 0.7000" in page and "v2: 0.8500" in page


def test_the_composition_page_shows_metrics_heatmap_and_utilisation(
    alice, mixture, expert_file, media
):
    a = make_expert(alice, mixture, expert_file, status="accepted", seed=1)
    make_composition(mixture, [a])
    response = Client().get("/m/weather-food/v1/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Routing matrix" in body and body.count("<svg") == 2
    assert "0.8000" in body and "expert 1" in body
    assert Client().get("/m/weather-food/v9/").status_code == 404


def test_the_review_queue_is_for_maintainers_only(alice, bob, charlie, mixture, expert_file, media):
    make_expert(alice, mixture, expert_file, status="failed", seed=1)
    assert client_for(charlie).get("/review/").status_code == 200
    assert b"expert 1" in client_for(charlie).get("/review/").content
    assert client_for(bob).get("/review/").status_code == 404
    assert client_for(None).get("/review/").status_code == 302


def test_maintainers_upload_domain_data_and_others_get_404(
    alice, charlie, mixture, media, tmp_path
):
    from devtools.tiny import synthetic_rows

    csv = tmp_path / "weather.csv"
    csv.write_text(
        "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in synthetic_rows("weather", 100))
    )
    url = "/m/weather-food/domains/weather/data/"
    with open(csv, "rb") as f:
        assert client_for(alice).post(url, {"file": f}).status_code == 404
    with open(csv, "rb") as f:
        assert client_for(charlie).post(url, {"file": f}).status_code == 302
    domain = mixture.domains.get(name="weather")
    assert domain.router_count + domain.eval_count == 100
    bad = tmp_path / "bad.csv"
    bad.write_text("words\nx\n")
    with open(bad, "rb") as f:
        response = client_for(charlie).post(url, {"file": f})
    assert response.status_code == 400 and b"missing: label, text" in response.content


def test_charts_escape_their_labels():
    svg = heatmap([[0.9, 0.1]], ["<d>"], ["a&b", "c"], "t<")
    assert "<d>" not in svg
    assert "&lt;d&gt;" in svg and "a&amp;b" in svg and "t&lt;" in svg
    assert "&lt;x&gt;" in bars([0.5], ["<x>"], "b")
    assert line([], "empty") == "" and "v1" in line([("v1", 0.5), ("v2", 0.6)], "l")


def test_the_expert_status_endpoint_feeds_the_live_page(alice, bob, mixture, expert_file, media):
    expert = make_expert(alice, mixture, expert_file)
    from experts.models import Job

    Job.objects.create(
        action="validate",
        mixture=mixture,
        expert=expert,
        status="running",
        progress=40,
        message="evaluating on held-out data",
    )
    data = client_for(alice).get(f"/experts/{expert.pk}/status.json").json()
    assert data["status"] == "uploaded" and data["final"] is False
    assert data["job"]["progress"] == 40 and "held-out" in data["job"]["message"]
    assert client_for(bob).get(f"/experts/{expert.pk}/status.json").status_code == 404
    page = client_for(alice).get(f"/experts/{expert.pk}/").content.decode()
    assert 'data-final="false"' in page and "hub/status.js" in page


def test_a_composition_without_files_has_no_download(alice, mixture, expert_file, media):
    a = make_expert(alice, mixture, expert_file, status="accepted", seed=1)
    make_composition(mixture, [a])
    response = Client().get("/m/weather-food/v1/download/")
    assert response.status_code == 404
    assert Client().get("/m/weather-food/v1/files/config.json").status_code == 404


def test_maintainers_add_domains_and_others_cannot(alice, charlie, mixture):
    assert (
        client_for(alice).post("/m/weather-food/domains/new/", {"name": "sport"}).status_code == 404
    )
    response = client_for(charlie).post("/m/weather-food/domains/new/", {"name": "sport"})
    assert response.status_code == 302 and mixture.domains.filter(name="sport").exists()
    again = client_for(charlie).post("/m/weather-food/domains/new/", {"name": "sport"})
    assert again.status_code == 400 and mixture.domains.filter(name="sport").count() == 1


def test_maintainers_pin_an_older_composition_and_others_cannot(
    alice, charlie, mixture, expert_file, media
):
    a = make_expert(alice, mixture, expert_file, status="accepted", seed=1)
    make_composition(mixture, [a], version=1)
    Composition.objects.update(is_current=False)
    make_composition(mixture, [a], version=2)
    assert client_for(alice).post("/m/weather-food/v1/pin/").status_code == 404
    assert Composition.objects.get(is_current=True).version == 2
    assert client_for(charlie).post("/m/weather-food/v1/pin/").status_code == 302
    assert list(Composition.objects.filter(is_current=True).values_list("version", flat=True)) == [
        1
    ]


def test_maintainers_queue_a_retrain_once(
    alice, charlie, mixture, sent, django_capture_on_commit_callbacks
):
    from experts.models import Job

    assert client_for(alice).post("/m/weather-food/retrain/").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        client_for(charlie).post("/m/weather-food/retrain/")
        client_for(charlie).post("/m/weather-food/retrain/")
    assert Job.objects.filter(action="retrain").count() == 1
    assert [name for name, _ in sent] == ["workers.tasks.retrain_gate"]


def test_a_mixture_without_domains_says_so_instead_of_an_empty_upload_form(alice, mixture):
    mixture.domains.all().delete()
    page = client_for(alice).get("/m/weather-food/").content.decode()
    assert 'id="no-domains"' in page and 'id="upload-form"' not in page


def test_a_composition_names_the_domains_it_has_no_expert_for(alice, mixture, expert_file):
    expert = make_expert(alice, mixture, expert_file, status="accepted")
    composition = Composition.objects.create(
        mixture=mixture,
        version=1,
        is_current=True,
        expert_shas=[expert.sha256],
        metrics={
            "domains": {"weather": {"n": 10, "accuracy": 0.9, "macro_f1": 0.9}},
            "overall": {"n": 10, "accuracy": 0.9, "macro_f1": 0.9},
        },
    )
    composition.experts.set([expert])
    page = client_for(alice).get("/m/weather-food/v1/").content.decode()
    assert "overall (1 of 2 domains)" in page
    assert 'id="missing-domains"' in page and "Domains with no expert yet: food" in page


def test_the_history_chart_draws_a_line_per_domain_from_its_first_version():
    from experts.charts import lines

    svg = lines({"bbc": [0.9, 0.91], "rotten": [None, 0.8]}, ["v1", "v2"], "t")
    assert svg.count("<path ") == 2 and svg.count("<circle ") == 3
    assert ">bbc</text>" in svg and ">rotten</text>" in svg  # the legend
    assert 'width="100%"' in svg and "viewBox" in svg


def test_bar_labels_have_room_and_long_names_are_shortened():
    long = "a very long expert name that goes on and on"
    svg = bars([0.5, 0.5], [long, "b"], "t")
    width = int(svg.split('width="')[1].split('"')[0])
    assert width > 2 * 52 + 100  # the left margin grew for the leaning labels
    assert f"<title>{long}</title>" in svg and "a very long expert name tha…" in svg
