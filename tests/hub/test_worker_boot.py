"""The embedded default starts a Celery worker with no services (filesystem broker)."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_worker_starts_on_the_embedded_broker(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["MOECOLLAB_VAR_DIR"] = str(tmp_path)
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hub",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and worker.poll() is None:
                if "ready." in log.read_text():
                    break
                time.sleep(0.5)
            text = log.read_text()
            assert worker.poll() is None, text
            assert "ready." in text and "filesystem://" in text, text
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    assert (tmp_path / "broker" / "queue").is_dir()
    assert (tmp_path / "broker" / "control").is_dir()
    assert not (ROOT / "control").exists()
