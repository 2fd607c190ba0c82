"""`./run start` stops everything it started: on a TERM, and when it is itself killed."""

import os
import signal
import subprocess
import time
import urllib.request

import psutil

from tests.hub.processes import ROOT, free_port, wait_for


def start(tmp_path, port):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(MOECOLLAB_VAR_DIR=str(tmp_path), PORT=str(port), MOECOLLAB_DEMO_EXPERTS="0")
    log = open(tmp_path / "run.log", "a")
    run = subprocess.Popen(["./run", "start"], cwd=ROOT, env=env, stdout=log, stderr=log)

    def serving():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return True
        except OSError:
            return False

    wait_for(serving, 240, "./run start to serve the site")
    family = wait_for(
        lambda: (kids := psutil.Process(run.pid).children(recursive=True)) and len(kids) >= 4
        and kids,
        60,
        "the web server, the worker, its pool child and its beat",
    )  # fmt: skip
    names = " ".join(" ".join(p.cmdline()) for p in family)
    assert "runserver" in names and "celery" in names and "--beat" in names
    return run, family


def gone(family):
    return not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_run_start_stops_everything_on_term_and_when_killed(tmp_path):
    port = free_port()
    run, family = start(tmp_path, port)
    run.send_signal(signal.SIGTERM)
    assert run.wait(60) != 0
    wait_for(lambda: gone(family), 30, "everything ./run start started to end after a TERM")

    run, family = start(tmp_path, port)
    run.kill()  # no trap runs: the children must still not outlive it
    run.wait(10)
    started = time.monotonic()
    wait_for(lambda: gone(family), 30, "everything ./run start started to end after a KILL")
    print(
        f"./run start killed: its {len(family)} processes ended "
        f"in {time.monotonic() - started:.1f} s"
    )
