"""Maintainers run a mixture without the admin: open it, change its settings, add
domains with declared labels and their data, from the site and from the API alike."""

import io

from django.contrib.auth.models import User
from django.test import Client

from devtools.tiny import synthetic_rows
from experts.models import Domain, Mixture
from tests.hub.conftest import api_client
from tests.hub.test_experts_access import client_for, make_expert


def csv_file(rows, name="data.csv"):
    f = io.BytesIO(("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows)).encode())
    f.name = name
    return f


def routing_fields(**overrides):
    fields = {
        "gate_top_k": 1,
        "gate_temperature": 1.0,
        "gate_hidden": 64,
        "gate_train_top_k": 0,
        "gate_noise_std": 0.0,
        "seed": 3,
        "loss_routing": 0.5,
        "loss_balance": 0.01,
        "loss_entropy_example": 0.01,
        "loss_entropy_batch": 0.01,
        "loss_z": 0.001,
    }
    return {**fields, **overrides}


def test_anyone_with_an_account_opens_a_mixture_from_the_site_and_maintains_it(bob, mixture):
    page = client_for(bob).post(
        "/mixtures/new/",
        {
            "name": "Bob's mixture",
            "slug": "bobs",
            "base_model": mixture.base_model.pk,
            "tolerance": 0.05,
            "upload_quota": 5,
            "max_upload_bytes": 1_000_000,
            **routing_fields(),
        },
    )
    assert page.status_code == 302 and page["Location"] == "/m/bobs/domains/new/"
    created = Mixture.objects.get(slug="bobs")
    assert created.is_maintainer(bob) and not created.is_maintainer(User(pk=999))
    assert created.routing["gate"]["top_k"] == 1 and created.routing["seed"] == 3
    assert created.routing["loss"]["routing"] == 0.5


def test_maintainers_change_settings_and_bad_routing_is_refused_with_why(charlie, mixture, bob):
    base = {
        "name": "Weather and food",
        "base_model": mixture.base_model.pk,
        "tolerance": 0.03,
        "upload_quota": 4,
        "max_upload_bytes": 2_000_000,
    }
    client = client_for(charlie)
    assert client.post("/m/weather-food/settings/", {**base, **routing_fields()}).status_code == 302
    mixture.refresh_from_db()
    assert (mixture.tolerance, mixture.upload_quota, mixture.routing["gate"]["hidden"]) == (
        0.03,
        4,
        64,
    )
    # unticked, the classifier's routing options are off, and the mixture's page says so
    assert mixture.routing["classifier"] == {
        "gate_features": "mean-cls-middle",
        "read_experts": False,
        "calibrate": False,
        "balance_domains": False,
    }
    page = client.get("/m/weather-food/").content.decode()
    assert (
        "reads the base model's last layer (mean and [CLS]) and middle layer; experts not" in page
    )
    ticked = {
        "classifier_read_experts": "on",
        "classifier_calibrate": "on",
        "classifier_gate_features": "mean",
    }
    assert (
        client.post("/m/weather-food/settings/", {**base, **routing_fields(), **ticked}).status_code
        == 302
    )
    mixture.refresh_from_db()
    assert mixture.routing["classifier"]["read_experts"] is True
    page = client.get("/m/weather-food/").content.decode()
    assert "mean-pooled last layer and each head expert's confidence" in page
    assert "domains weigh by" in page
    bad = client.post("/m/weather-food/settings/", {**base, **routing_fields(gate_temperature=0)})
    assert bad.status_code == 400 and "temperature must be above 0" in bad.content.decode()
    assert client_for(bob).get("/m/weather-food/settings/").status_code == 404


def test_declared_labels_keep_their_order_and_data_may_lack_some_but_not_add(charlie, mixture):
    client = client_for(charlie)
    made = client.post(
        "/m/weather-food/domains/new/",
        {"name": "sport", "description": "", "labels_text": "win, lose, draw"},
    )
    assert made.status_code == 302
    sport = Domain.objects.get(name="sport")
    assert sport.labels == ["win", "lose", "draw"] and sport.labels_declared
    rows = synthetic_rows("sport", 200)  # wins and losses, no draw
    page = client.post("/m/weather-food/domains/sport/data/", {"file": csv_file(rows)})
    assert page.status_code == 302
    sport.refresh_from_db()
    assert sport.labels == ["win", "lose", "draw"] and sport.eval_count > 0
    edit = client.get("/m/weather-food/domains/sport/").content.decode()
    assert 'id="labels-lacking">draw<' in edit
    extra = rows[:30] + [("a tie again", "tie")] * 30
    refused = client.post("/m/weather-food/domains/sport/data/", {"file": csv_file(extra)})
    assert (
        refused.status_code == 400
        and "does not declare: [&#x27;tie&#x27;]" in refused.content.decode()
    )


def test_labels_do_not_change_once_experts_were_uploaded(charlie, alice, mixture, expert_file):
    make_expert(alice, mixture, expert_file)
    response = client_for(charlie).post(
        "/m/weather-food/domains/weather/", {"description": "", "labels_text": "sunny, rainy"}
    )
    assert response.status_code == 400
    assert "cannot change once experts were uploaded" in response.content.decode()


def test_a_staff_maintainer_without_permissions_is_not_offered_the_admin(db):
    staff = User.objects.create_user("staffer", "s@example.org", "pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert ">Admin<" not in client.get("/").content.decode()


def test_the_api_opens_and_changes_mixtures_and_their_domains(alice, bob, mixture, media):
    client = api_client(alice)
    made = client.post(
        "/api/mixtures/",
        {
            "slug": "alices",
            "name": "Alice's",
            "base_model": mixture.base_model.name,
            "routing": {"gate": {"top_k": 1}},
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["routing"]["gate"]["top_k"] == 1 and body["routing"]["gate"]["temperature"] == 1.0
    assert body["routing"]["classifier"] == {
        "gate_features": "mean-cls-middle",
        "read_experts": True,
        "calibrate": True,
        "balance_domains": True,
    }
    assert Mixture.objects.get(slug="alices").is_maintainer(alice)

    changed = client.patch("/api/mixtures/alices/", {"tolerance": 0.1}, format="json")
    assert changed.status_code == 200 and changed.json()["tolerance"] == 0.1
    assert api_client(bob).patch("/api/mixtures/alices/", {"tolerance": 0.2}).status_code == 404
    bad = client.patch(
        "/api/mixtures/alices/", {"routing": {"gate": {"top_k": "two"}}}, format="json"
    )
    assert bad.status_code == 400 and "must be a number" in str(bad.json()["routing"])
    for wrong, why in (
        ({"read_experts": "yes"}, "routing.classifier.read_experts must be true or false"),
        ({"sharpen": True}, "unknown ClassifierRouting keys: sharpen"),
        ({"gate_features": "cls"}, "gate_features must be one of ['mean-cls-middle', 'mean']"),
    ):
        bad = client.patch(
            "/api/mixtures/alices/", {"routing": {"classifier": wrong}}, format="json"
        )
        assert bad.status_code == 400 and why in str(bad.json()["routing"]), bad.json()

    domain = client.post(
        "/api/domains/",
        {"mixture": "alices", "name": "sport", "labels": ["win", "lose"]},
        format="json",
    )
    assert domain.status_code == 201 and domain.json()["labels_declared"] is True
    pk = domain.json()["id"]
    data = client.post(
        f"/api/domains/{pk}/data/",
        {"file": csv_file(synthetic_rows("sport", 200))},
        format="multipart",
    )
    assert data.status_code == 200 and data.json()["eval_count"] > 0
    assert (
        api_client(bob)
        .post("/api/domains/", {"mixture": "alices", "name": "x"}, format="json")
        .status_code
        == 404
    )
    assert Domain.objects.filter(mixture__slug="alices").count() == 1
