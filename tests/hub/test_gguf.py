"""A per-token language-model composition as a GGUF file for llama.cpp, written by the hub's
worker with llama.cpp's own converter the first time someone asks for it; what the file
holds is the composition (its experts, router and base), read back with the `gguf`
package. (llama.cpp itself runs the demo's file in bench/export_lm.py: building it takes
about 15 minutes on 2 cores.)"""

# ruff: noqa: F811 -- fixtures are imported to be used here

import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.test import Client

from devtools.tiny_lm import build_tiny_lm, save_lm_peft_adapter, smollm2_tokenizer
from experts.models import Job
from tests.hub.conftest import api_client
from tests.hub.lm_mixture import compose_v1, make_lm_mixture
from tests.hub.processes import wait_for

SLUG = "tiny-gguf"
URL = f"/m/{SLUG}/v1/download/?format=gguf"


@pytest.fixture(scope="session")
def gguf_lm_folder(tmp_path_factory) -> str:
    """The tiny Llama with SmolLM2's tokenizer: llama.cpp's converter refuses a tokenizer
    whose pre-tokenizer it does not know (the other tests' word-level one)."""
    return build_tiny_lm(tmp_path_factory.mktemp("gguf-lm"), tokenizer=smollm2_tokenizer())


def mlp_adapter(folder, base_folder, domain):
    from routing.kinds.causal_lm.layout import MLP_PROJECTIONS

    seed = {"weather": 1, "food": 2}[domain]
    return save_lm_peft_adapter(folder, base_folder, seed=seed, targets=MLP_PROJECTIONS)


@pytest.fixture
def per_token(db, media, gguf_lm_folder, alice, bob, charlie, tmp_path, settings):
    settings.MOECOLLAB_CACHE_DIR = tmp_path / "cache"
    mixture = make_lm_mixture(gguf_lm_folder, charlie, slug=SLUG, texts=40,
                              lm={"granularity": "token"})  # fmt: skip
    return compose_v1(mixture, gguf_lm_folder, (alice, bob), tmp_path, mlp_adapter)


def checkpoint(folder: Path) -> dict:
    from safetensors.torch import load_file

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(load_file(folder / shard))
    return tensors


@pytest.mark.django_db(transaction=True)
def test_a_gguf_file_is_written_on_request_by_a_worker_and_holds_the_composition(
    per_token, workers, tmp_path, monkeypatch, settings
):
    from django.core.management import call_command
    from gguf import GGUFReader

    from experts.models import Composition
    from experts.services.blobs import local_path
    from experts.services.storage import FULL, GGUF, LIGHT, export_folder, export_manifest

    with monkeypatch.context() as bare:  # a hub without the converter says why, queues nothing
        bare.setenv("MOECOLLAB_GGUF_CONVERTER", str(tmp_path / "nowhere"))
        answer = api_client().get(f"/api/compositions/{per_token.pk}/").json()
        reason = {f["name"]: f for f in answer["formats"]}["gguf"]["reason"]
        assert "python -m routing.gguf install" in reason
        response = Client().get(URL)
        assert response.status_code == 400
        assert response.content.decode().startswith("this composition has no gguf download: ")
        assert not Job.objects.filter(action=Job.Action.GGUF).exists()
        assert 'id="snippet-gguf"' not in Client().get(f"/m/{SLUG}/v1/").content.decode()

    page = Client().get(f"/m/{SLUG}/v1/").content.decode()
    assert 'id="format-gguf"' in page and "gguf file</a>" in page
    assert "written on first download" in page and 'id="snippet-gguf"' in page

    # A worker whose converter writes part of its file and dies: the job fails with the
    # converter's message and nothing is stored.
    broken = tmp_path / "broken-converter"
    (broken / "gguf-py").mkdir(parents=True)
    (broken / "convert_hf_to_gguf.py").write_text(
        "import sys\nopen(sys.argv[3], 'wb').write(b'GGUF half')\n"
        "sys.exit('the tensor blk.0.ffn_up_exps is too large')\n"
    )
    waiting = Client().get(URL)  # the first request queues the job and waits for it
    assert waiting.status_code == 202 and "GGUF file for llama.cpp" in waiting.content.decode()
    assert Client().get(URL).status_code == 202  # a second one waits for the same job
    [failed] = Job.objects.filter(action=Job.Action.GGUF, composition=per_token)
    first = workers(MOECOLLAB_GGUF_CONVERTER=str(broken))
    first.start()
    failed = ended(failed)
    assert failed.status == Job.Status.FAILED
    assert "llama.cpp's converter failed (exit status 1)" in failed.message
    assert "too large" in failed.message
    assert export_manifest(per_token, GGUF) is None
    status = Client().get(f"/m/{SLUG}/v1/download/status.json?format=gguf").json()
    assert not status["ready"] and status["job"]["status"] == "failed"
    first.stop()

    # Asked again, a worker with llama.cpp's converter writes it.
    assert Client().get(URL).status_code == 202
    job = Job.objects.get(action=Job.Action.GGUF, composition=per_token, status="queued")
    workers().start()
    job = ended(job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 1 and job.progress == 100
    status = Client().get(f"/m/{SLUG}/v1/download/status.json?format=gguf").json()
    assert status["ready"] and status["job"]["status"] == "succeeded"

    response = Client().get(URL)
    assert response.status_code == 200
    assert f'filename="{SLUG}-v1-f16.gguf"' in response["Content-Disposition"]
    path = tmp_path / "model.gguf"
    path.write_bytes(b"".join(response.streaming_content))

    reader = GGUFReader(path)
    fields = {k: reader.fields[k].contents() for k in (
        "general.architecture", "llama.expert_count", "llama.expert_used_count",
        "llama.block_count", "tokenizer.ggml.pre")}  # fmt: skip
    weights = checkpoint(export_folder(per_token, FULL))
    config = json.loads((export_folder(per_token, FULL) / "config.json").read_text())
    assert config["model_type"] == "mixtral" and config["num_local_experts"] == 3
    assert fields == {"general.architecture": "llama", "llama.expert_count": 3,
                      "llama.expert_used_count": config["num_experts_per_tok"],
                      "llama.block_count": 2, "tokenizer.ggml.pre": "smollm"}  # fmt: skip
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors}
    assert {t.tensor_type.name for t in reader.tensors} == {"F16", "F32"}

    def close(name, expected):
        want = expected.float().numpy()
        assert tensors[name].shape == want.shape, name
        np.testing.assert_allclose(tensors[name], want, rtol=2e-3, atol=2e-4, err_msg=name)

    close("token_embd.weight", weights["model.embed_tokens.weight"])
    for i in range(2):
        moe = f"model.layers.{i}.block_sparse_moe"
        close(f"blk.{i}.ffn_gate_inp.weight", weights[f"{moe}.gate.weight"])  # the router
        for gguf_name, hf in (("gate", "w1"), ("down", "w2"), ("up", "w3")):
            for e in range(3):  # the shared expert (the base's MLP) and both contributors'
                got = tensors[f"blk.{i}.ffn_{gguf_name}_exps.weight"][e]
                want = weights[f"{moe}.experts.{e}.{hf}.weight"].numpy()
                np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)
        close(f"blk.{i}.attn_v.weight", weights[f"model.layers.{i}.self_attn.v_proj.weight"])
    # the experts differ: each contributor's LoRA is merged into its own copy of the MLP
    up = tensors["blk.0.ffn_up_exps.weight"]
    assert np.abs(up[1] - up[0]).max() > 1e-3 and np.abs(up[2] - up[1]).max() > 1e-3

    answer = api_client().get(f"/api/compositions/{per_token.pk}/").json()
    offered = {f["name"]: f for f in answer["formats"]}["gguf"]
    assert offered["reason"] is None and offered["ready"] and offered["label"] == "gguf file"
    assert offered["bytes"] == path.stat().st_size and offered["url"].endswith("format=gguf")

    # an old version's GGUF file goes with its full folder; its light export stays
    [blob] = [e["blob"] for e in export_manifest(per_token, GGUF)["files"].values()]
    Composition.objects.filter(pk=per_token.pk).update(is_current=False)
    settings.MOECOLLAB_SHARED_GRACE_SECONDS = 0
    call_command("prune_exports", keep=0, stdout=io.StringIO())
    assert export_manifest(per_token, GGUF) is None and export_manifest(per_token, FULL) is None
    assert export_manifest(per_token, LIGHT) is not None and not local_path(blob).exists()


def ended(job):
    return wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=("succeeded", "failed"))
                    .first(), what="the GGUF job", timeout=240)  # fmt: skip
