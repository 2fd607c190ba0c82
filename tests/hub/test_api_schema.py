"""Schemathesis against the hub's own OpenAPI schema: every answer the API gives,
errors included, is one the schema states, and what the schema refuses the API refuses."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_schemathesis_finds_no_violation_of_the_schema(
    live_server, alice, mixture, expert_file, sent, tmp_path
):
    from tests.hub.conftest import upload

    upload(alice, expert_file(), "weather")  # something to list, fetch and retire
    token = Token.objects.get(user=alice).key
    # Every check but positive_data_acceptance: an upload needs a real safetensors
    # file, which no schema can describe, so schema-valid bodies are rightly refused.
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{live_server.url}/api/schema/",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "-H",
            f"Authorization: Token {token}",
            "--max-examples",
            "15",
            "--generation-deterministic",
            "--workers",
            "1",
            "--no-color",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        cwd=tmp_path,
    )
    summary = [line for line in run.stdout.splitlines() if "generated" in line]
    print(f"schemathesis: {summary}")
    assert run.returncode == 0, run.stdout[-6000:]
