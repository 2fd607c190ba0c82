"""The Django project: home page, deploy checks, migrations."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_home_page_explains_how_to_contribute(client, db):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "python -m routing train --dataset bbc" in body
    for name in ("bbc", "reuters8", "20news", "rotten"):
        assert f"<code>{name}</code>" in body


def _manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True
    )


def test_deploy_checks_pass_with_production_settings(tmp_path):
    out = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="x7" * 30 + "-production-secret-key",
        DJANGO_ALLOWED_HOSTS="hub.example.org",
        MOECOLLAB_VAR_DIR=str(tmp_path),
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    out = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, "DJANGO_DEBUG": "0", "MOECOLLAB_VAR_DIR": str(tmp_path)},
    )
    assert out.returncode != 0 and "DJANGO_SECRET_KEY must be set" in out.stderr


def test_a_bad_boolean_setting_fails_loudly(tmp_path):
    out = _manage("check", DJANGO_DEBUG="maybe", MOECOLLAB_VAR_DIR=str(tmp_path))
    assert out.returncode != 0 and "DJANGO_DEBUG='maybe' is not a boolean" in out.stderr


def test_models_and_migrations_agree(tmp_path):
    out = _manage("makemigrations", "--check", "--dry-run", MOECOLLAB_VAR_DIR=str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
