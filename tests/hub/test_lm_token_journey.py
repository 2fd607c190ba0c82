"""A per-token, anchored language-model mixture tried the way its people use it, on the
tiny random Llama, with real prefork workers on Redis and PostgreSQL and a real Chromium:

- the maintainer makes the mixture per-token (API) and uploads an anchor on its anchor page;
- one contributor follows the PEFT recipe the mixture page shows (the page's own code,
  run here with its training placeholder filled in) and uploads through the page's form;
- another trains with `python -m routing lm train --hub ... --upload`;
- both are accepted, the composition's page shows the per-layer routing, Try it colours
  the tokens, and the exported checkpoint (Mixtral, no remote code) generates the same
  tokens as Try it."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import json
import os
from pathlib import Path

import pytest

from devtools.tiny_lm import lm_texts
from experts.models import Anchor, Composition, Expert, Job
from tests.hub.conftest import api_client, log_in, shot
from tests.hub.lm_mixture import PREFIX, hub_lm_folder, lm_mixture  # noqa: F401 (fixtures)
from tests.hub.processes import wait_for
from tests.hub.test_anchors import tiny_anchor  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
PROMPT = "rain storm wet cloud umbrella"

# What a contributor writes where the recipe says "train on your domain's text": a plain
# PyTorch loop over their own texts.
TRAINING = """
from transformers import AutoTokenizer
from devtools.tiny_lm import lm_texts

tokenizer = AutoTokenizer.from_pretrained(BASE)
optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
texts = lm_texts("weather", 96, words=60, seed=1)
model.train()
for epoch in range(2):
    for i in range(0, len(texts), 16):
        batch = tokenizer(texts[i : i + 16], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
"""


def follow_the_recipe(recipe: str, base: str, folder) -> None:
    """Run the mixture page's PEFT recipe in `folder`, its placeholder filled in."""
    placeholder = "# ... train on your domain's text ..."
    assert placeholder in recipe, recipe
    code = recipe.replace(placeholder, TRAINING)
    here = os.getcwd()
    os.chdir(folder)
    try:
        exec(compile(code, "recipe.py", "exec"), {"BASE": base, "__name__": "recipe"})
    finally:
        os.chdir(here)


def test_a_per_token_mixture_from_its_anchor_to_an_exported_checkpoint(
    live_server, page, alice, bob, charlie, lm_mixture, hub_lm_folder, tiny_anchor, workers,
    tmp_path,
):  # fmt: skip
    from rest_framework.authtoken.models import Token
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from experts.services.storage import download_ready, export_folder
    from routing.cli import main

    url = live_server.url
    workers().start()
    # The maintainer: per-token routing, by name, then the anchor through the site.
    settings = api_client(charlie).patch(
        "/api/mixtures/tiny-lm/",
        {"routing": {"lm": {"granularity": "token", "prefix_tokens": PREFIX}}},
        format="json",
    )
    assert settings.status_code == 200, settings.content
    log_in(page, url, "charlie", "pw-charlie-123")
    page.goto(f"{url}/m/tiny-lm/anchor/")
    assert page.is_visible("#no-anchor")
    page.set_input_files("#id_file", str(tiny_anchor))
    page.click("#upload-form button:has-text('Upload the anchor')")
    anchor = wait_for(lambda: Anchor.objects.filter(status="accepted").first(), timeout=180,
                      what="the anchor's verdict")  # fmt: skip
    page.wait_for_selector("#anchor-status.accepted", timeout=30000)  # the live status
    page.goto(f"{url}/m/tiny-lm/anchor/")
    assert page.inner_text("#anchor-sha") == anchor.sha256
    assert "weather" in page.inner_text("#anchor-scores")
    shot(page, "40-lm-anchor")

    # Alice: the PEFT recipe shown on the mixture page, then the page's upload form.
    page.click("form.inline button:has-text('Log out')")
    log_in(page, url, "alice", "pw-alice-123")
    page.goto(f"{url}/m/tiny-lm/")
    assert anchor.sha256 in page.inner_text("#contract-anchor")
    recipe = page.inner_text("#peft-recipe")
    shot(page, "43-lm-mixture-contract")
    assert 'target_modules=["gate_proj", "up_proj", "down_proj"]' in recipe
    follow_the_recipe(recipe, hub_lm_folder, tmp_path)
    adapter = tmp_path / "my-expert"
    assert json.loads((adapter / "adapter_config.json").read_text())[
        "moecollab_anchor_sha256"
    ] == anchor.sha256  # fmt: skip
    page.select_option("#id_domain", str(lm_mixture.domains.get(name="weather").pk))
    page.fill("#id_name", "weather, plain PEFT")
    page.set_input_files("#id_file", str(adapter / "adapter_model.safetensors"))
    page.set_input_files("#id_adapter_config", str(adapter / "adapter_config.json"))
    page.click("#upload-form button:has-text('Upload')")
    page.wait_for_url(f"{url}/experts/*/")
    weather = Expert.objects.get(name="weather, plain PEFT")

    # Bob: the CLI against the hub, on base + anchor, uploaded and followed.
    corpus = tmp_path / "food.txt"
    corpus.write_text("\n\n".join(lm_texts("food", 140, words=60, seed=1)))
    status = main([
        "lm", "train", "--hub", url, "--mixture", "tiny-lm", "--domain", "food",
        "--corpus", str(corpus), "--out", str(tmp_path / "food.safetensors"), "--rank", "4",
        "--epochs", "2", "--batch-size", "16", "--lr", "2e-2", "--device", "cpu",
        "--cache", str(tmp_path / "cli-cache"), "--prefix-tokens", str(PREFIX),
        "--upload", "--token", Token.objects.create(user=bob).key, "--name", "food, CLI",
    ])  # fmt: skip
    food = Expert.objects.get(name="food, CLI")
    judged = Expert.objects.filter(pk=weather.pk).exclude(status__in=("uploaded", "validating"))
    weather = wait_for(judged.first, timeout=180, what="weather's verdict")
    assert weather.status == "accepted", weather.report
    food.refresh_from_db()
    assert status == 0, food.report
    assert food.status == "accepted", food.report
    page.goto(f"{url}/experts/{food.pk}/")  # against the base, the anchor, the compositions
    figures = page.inner_text("#expert-figures")
    anchored = anchor.report["metrics"]["domains"]["food"]
    for value in (anchored["base_perplexity"], anchored["perplexity"], food.metrics["perplexity"],
                  food.report["candidate"]["food"]):  # fmt: skip
        assert f"{value:.3f}" in figures, (value, figures)
    shot(page, "42-lm-expert-figures")

    # The composition of both: its page, Try it, its export.
    both = wait_for(lambda: next((c for c in Composition.objects.filter(is_current=True)
                                  if c.experts.count() == 2), None), timeout=240,
                    what="a composition of both experts")  # fmt: skip
    assert both.anchor_id == anchor.pk
    page.goto(f"{url}/m/tiny-lm/v{both.version}/")
    assert page.is_visible("#layer-routing")
    assert "base + anchor (shared)" in page.inner_text("main")
    assert "trust_remote_code" not in page.inner_text("#snippet-transformers")
    page.fill("#id_prompt", PROMPT)
    page.click("#try-button")
    page.wait_for_selector("#try-legend", timeout=120000)
    shot(page, "41-lm-per-token-try-it")
    job = Job.objects.get(action="generate", status="succeeded")
    tokens = page.query_selector_all("#try-output .tok")
    assert len(tokens) == len(job.result["tokens"]) > 0
    assert "".join(t.inner_text() for t in tokens) == job.result["text"]
    legend = page.inner_text("#try-legend")
    assert all(name in legend for name in job.result["token_experts"])

    wait_for(lambda: download_ready(both), timeout=180, what="the export")
    folder = Path(export_folder(both))
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mixtral" and "auto_map" not in config
    model = AutoModelForCausalLM.from_pretrained(folder).eval()  # no remote code
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer([PROMPT], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=job.request["max_new_tokens"],
                         do_sample=False)  # fmt: skip
    text = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text == job.result["text"]
