"""The documentation's Python samples run as shown, pointed at the test's own hub,
Hub-compatible server and tiny base model instead of public addresses."""

# ruff: noqa: F811 -- the publishing tests' fixtures are imported to be used here

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.experts import make_head_file
from experts.models import Domain, Expert, Mixture
from tests.hub.published import REPO, hub_server, publish_now, stored  # noqa: F401 (fixtures)
from tests.routing.lm_fixtures import (  # noqa: F401 (fixtures)
    lm_domains,
    lm_expert_files,
    tiny_lm,
    tiny_lm_export,
    tiny_lm_folder,
)

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_BASE = "sentence-transformers/all-MiniLM-L6-v2"


def samples(doc: str) -> list[str]:
    """The ```python blocks of a document, in order."""
    return re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), flags=re.S)


def run(code: str, cwd, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTEST"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("doc", ["README.md", "docs/publishing.md"])
def test_the_pipeline_sample_loads_a_published_composition(
    doc,
    stored,
    hub_server,
    sent,
    tmp_path,
):
    publish_now(stored)
    (code,) = [s for s in samples(doc) if 'pipeline(\n    "text-classification"' in s]
    code = code.replace("your-name/news-and-reviews", REPO).replace(
        'revision="v2"', 'revision="v1"'
    )
    result = run(code, tmp_path, HF_ENDPOINT=hub_server.url, HF_HOME=str(tmp_path / "hf"),
                 HF_HUB_DISABLE_XET="1")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'label':" in result.stdout and "'score':" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_the_api_upload_sample_uploads_an_expert(live_server, alice, tiny_encoder, tmp_path, sent):
    from rest_framework.authtoken.models import Token

    from experts.models import BaseModel

    spec = tiny_encoder.spec
    base = BaseModel.objects.create(
        name=spec.name, hidden_size=spec.hidden_size, num_layers=spec.num_layers,
        intermediate_size=spec.intermediate_size,
    )  # fmt: skip
    mixture = Mixture.objects.create(slug="news-and-reviews", name="News", base_model=base)
    Domain.objects.create(mixture=mixture, name="bbc", labels=["business", "sport"])
    make_head_file(tmp_path / "bbc.safetensors", tiny_encoder, ["business", "sport"], "bbc")
    (code,) = [s for s in samples("docs/api.md") if "requests.post" in s]
    code = code.replace("http://127.0.0.1:8000", live_server.url)
    token = Token.objects.create(user=alice).key
    result = run(code, tmp_path, MOECOLLAB_TOKEN=token)
    assert result.returncode == 0, result.stderr[-2000:]
    expert = Expert.objects.get()
    assert result.stdout.split() == [str(expert.pk), "uploaded"]


@pytest.mark.parametrize("pooling", ["cls_pooler", "mean"])
def test_the_peft_samples_save_adapters_the_hub_accepts(pooling, tiny_encoder, tmp_path):
    from routing.kinds.classification.contract import check_expert_file

    peft_samples = [s for s in samples("docs/expert-format.md") if "get_peft_model" in s]
    (code,) = [s for s in peft_samples if ("SEQ_CLS" in s) == (pooling == "cls_pooler")
               and "CAUSAL_LM" not in s]  # fmt: skip
    code = code.replace(PUBLIC_BASE, tiny_encoder.location)
    result = run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    header = check_expert_file(
        tmp_path / "my-expert" / "adapter_model.safetensors",
        base=tiny_encoder.spec,
        labels=["a", "b", "c", "d", "e"],
    )
    assert (header.architecture, header.source, header.lora.r, header.pooling) == (
        "lora",
        "peft",
        8,
        pooling,
    )


@pytest.mark.smollm2
def test_the_language_model_peft_sample_saves_an_adapter_the_hub_accepts(tmp_path):
    """Run as shown: on the packaged SmolLM2."""
    from routing.basemodels import DEFAULT_LM_BASE, BaseSpec
    from routing.kinds.causal_lm.contract import check_lm_expert

    (code,) = [
        s for s in samples("docs/expert-format.md") if "CAUSAL_LM" in s and "my-lm-expert" in s
    ]
    result = run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    header = check_lm_expert(
        tmp_path / "my-lm-expert" / "adapter_model.safetensors",
        base=BaseSpec.read(DEFAULT_LM_BASE),
    )
    assert (header.source, header.base_model, header.lora.r) == ("peft", DEFAULT_LM_BASE, 8)


def test_the_readme_language_model_sample_runs_an_exported_mixture(tiny_lm_export, tmp_path):
    from tests.routing.test_lm_cli import runs_quietly

    (code,) = [s for s in samples("README.md") if '"text-generation"' in s]
    result = runs_quietly(code.replace('"my-lm-mixture-hf"', repr(str(tiny_lm_export))), tmp_path)
    assert result.stdout.startswith("def parse_args(argv):")
