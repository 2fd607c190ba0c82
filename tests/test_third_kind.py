"""A third kind of mixture is a package under `routing/kinds/` and nothing else: in a copy
of the project with one package added (its facts, its routing settings, no templates),
the hub opens a mixture of that kind through the API, checks its settings by name, takes
its domain data, queues its jobs on its queue and shows every page, without a line of
`experts/`, `hub/` or `templates/` changed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("routing", "experts", "hub", "workers", "devtools", "templates", "manage.py")

INFO = """
from dataclasses import dataclass

from ...config import setting
from ..interface import KindInfo


@dataclass
class EchoRouting:
    depth: int = setting(2, "how deep the echo goes", minimum=1, maximum=10)
    voice: str = setting("low", "its voice", choices=("low", "high"))


INFO = KindInfo(
    name="echo", title="Echo", metric="bleu", metric_title="BLEU", higher_is_better=True,
    second_metric="chrf", second_metric_title="chrF", auto_class="AutoModel",
    pipeline_task="text2text-generation", example_input="hello",
    implementation="routing.kinds.echo.kind:ECHO", expert_format_version=7,
    has_labels=True, generates=False, data_formats="CSV with text,label",
    tolerance_help="the largest BLEU drop on another domain", queue="echo-queue",
    routing_sections=(("echo", EchoRouting, "Echo"),),
)
"""
KIND = """
from ...data import read_table
from ..interface import MixtureKind
from .info import INFO


class EchoKind(MixtureKind):
    info = INFO

    def read_examples(self, data, filename):
        return read_table(data, fmt="csv")

    def __getattr__(self, name):
        raise NotImplementedError(name)


for _name in EchoKind.__abstractmethods__ - {"read_examples"}:
    setattr(EchoKind, _name, lambda self, *a, **k: None)
EchoKind.__abstractmethods__ = frozenset()
ECHO = EchoKind()
"""
SCRIPT = """
import json, os
import django

django.setup()
from django.core.management import call_command

call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experts import task_names
from experts.models import BaseModel, Composition, Mixture

user = User.objects.create_user("maya", password="pw-maya-123")
BaseModel.objects.create(name="echo-base", kind="echo", hidden_size=8, num_layers=1,
                         intermediate_size=16)
api = APIClient()
api.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.create(user=user).key)
out = {}
made = api.post("/api/mixtures/", {"slug": "echoes", "name": "Echoes", "kind": "echo",
                "base_model": "echo-base", "routing": {"echo": {"depth": 3}}}, format="json")
out["created"] = [made.status_code, made.json().get("routing", {}).get("echo")]
bad = api.patch("/api/mixtures/echoes/", {"routing": {"echo": {"depth": 99}}}, format="json")
out["bad_depth"] = [bad.status_code, str(bad.json())]
other = api.patch("/api/mixtures/echoes/", {"routing": {"lm": {}}}, format="json")
out["other_kind"] = [other.status_code, str(other.json())]
domain = api.post("/api/domains/", {"mixture": "echoes", "name": "greetings"}, format="json")
rows = "text,label\\n" + "".join(f"greeting number {i},{'hi' if i % 2 else 'yo'}\\n"
                                for i in range(60))
data = api.post(f"/api/domains/{domain.json()['id']}/data/",
                {"file": SimpleUploadedFile("rows.csv", rows.encode())}, format="multipart")
out["data"] = [data.status_code, data.json().get("labels")]
out["queue"] = task_names.queue_for(task_names.VALIDATE, "echo")
mixture = Mixture.objects.get(slug="echoes")
Composition.objects.create(mixture=mixture, version=1, is_current=True, metrics={
    "domains": {"greetings": {"bleu": 0.5, "chrf": 0.25, "n": 30}},
    "overall": {"bleu": 0.5, "chrf": 0.25, "n": 30}})
site = Client()
site.force_login(user)
pages = {}
for url in ("/", "/m/echoes/", "/m/echoes/settings/", "/m/echoes/leaderboard/",
            "/m/echoes/v1/", "/m/echoes/domains/greetings/data/"):
    page = site.get(url)
    pages[url] = [page.status_code, page.content.decode()]
out["pages"] = pages
print("RESULT " + json.dumps(out))
"""


def test_a_third_kind_is_a_package_under_routing_kinds_and_nothing_else(tmp_path):
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=ignore)
        else:
            shutil.copy(source, project / name)
    echo = project / "routing" / "kinds" / "echo"
    echo.mkdir()
    (echo / "__init__.py").write_text('"""A kind only this test knows."""\n')
    (echo / "info.py").write_text(INFO)
    (echo / "kind.py").write_text(KIND)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DJANGO_SETTINGS_MODULE": "hub.settings",
        "MOECOLLAB_VAR_DIR": str(tmp_path / "var"),
        "PYTHONPATH": str(project),
    }
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.split("RESULT ", 1)[1])
    assert out["created"] == [201, {"depth": 3, "voice": "low"}]
    assert out["bad_depth"][0] == 400
    assert "routing.echo.depth must be at most 10" in out["bad_depth"][1]
    assert out["other_kind"][0] == 400 and "is for causal-lm mixtures" in out["other_kind"][1]
    assert out["data"] == [200, ["hi", "yo"]]
    assert out["queue"] == "echo-queue"
    for url, (status, _) in out["pages"].items():
        assert status == 200, url
    pages = {url: body for url, (_, body) in out["pages"].items()}
    assert "Echo; v1: bleu 0.5000" in pages["/"]
    assert "expert format v7" in pages["/m/echoes/"]
    assert "Echo: depth" in pages["/m/echoes/settings/"]
    assert "how deep the echo goes" in pages["/m/echoes/settings/"]
    assert "chrF" in pages["/m/echoes/leaderboard/"]
    assert "BLEU" in pages["/m/echoes/v1/"] and "0.5000" in pages["/m/echoes/v1/"]
    assert "CSV with text,label" in pages["/m/echoes/domains/greetings/data/"]
