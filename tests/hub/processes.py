"""Real processes for the tests: Celery workers, a web server and a Redis server of our own.

Each runs as a subprocess on the test database, the way the hub runs them, so
that tests can stop, kill and restart them.
"""

from __future__ import annotations

import http.cookiejar
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
from django.db import connection

from experts import task_names

ROOT = Path(__file__).resolve().parents[2]
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUES = ",".join(task_names.ALL_QUEUES)


def wait_for(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """The test database, as a URL for a subprocess."""
    db = connection.settings_dict
    return (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def hub_env(tmp_path, media, **env) -> dict:
    """The environment of a hub process on the test database and Redis; a variable
    given as None is left out (DATABASE_URL=None: the embedded SQLite)."""
    merged = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PYTEST") and k != "HF_HUB_OFFLINE"
        },
        "DATABASE_URL": database_url(),
        "REDIS_URL": REDIS,
        "MOECOLLAB_MEDIA_ROOT": str(media),
        "MOECOLLAB_CACHE": str(tmp_path / "worker-cache"),
        "MOECOLLAB_VAR_DIR": str(tmp_path / "var"),
        "MOECOLLAB_RETRAIN_COALESCE_SECONDS": "1",
        **env,
    }
    return {k: v for k, v in merged.items() if v is not None}


class Process:
    """A subprocess whose output goes to a log file; stopped politely, then killed."""

    def __init__(self, args, env, log: Path, ready: str):
        self.args, self.env, self.log, self.ready = args, env, log, ready
        self.proc = None

    def start(self, timeout=60):
        out = open(self.log, "a")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
        )
        wait_for(lambda: self.ready in self.log.read_text(), timeout, f"{self.args[2]} to start")
        return self

    def kill(self):
        """SIGKILL the process and every child it has: nothing gets to clean up."""
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            p.kill()
        self.proc.kill()
        self.proc.wait(30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class Worker(Process):
    """A prefork Celery worker with one child, serving every queue (or those named)."""

    def __init__(
        self, tmp_path, media, *, beat=False, name="worker", queues=QUEUES, slow_validation=0,
        **env,
    ):  # fmt: skip
        program = ["tests.hub.slow_worker"] if slow_validation else ["celery"]
        if slow_validation:
            env["SLOW_VALIDATION_SECONDS"] = str(slow_validation)
        args = [sys.executable, "-m", *program, "-A", "hub", "worker", "--pool", "prefork"]
        args += ["--concurrency", "1", "--queues", queues, "--loglevel", "INFO"]
        args += ["--without-gossip", "--without-mingle", "--hostname", f"{name}@%h"]
        if beat:
            args += ["--beat", "--schedule", str(tmp_path / f"{name}-beat-schedule")]
        super().__init__(args, hub_env(tmp_path, media, **env), tmp_path / f"{name}.log", "ready.")

    def child(self):
        return wait_for(lambda: psutil.Process(self.proc.pid).children(), 30, "a pool child")[0]


class WebServer(Process):
    """The hub's web process (Django's server, threaded) on a free port."""

    def __init__(self, tmp_path, media, **env):
        self.port = free_port()
        self.env_for_commands = hub_env(tmp_path, media, **env)
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]
        log = tmp_path / f"web-{self.port}.log"
        super().__init__(args, hub_env(tmp_path, media, **env), log, "Quit the server")

    def start(self, timeout=60):
        super().start(timeout)
        wait_for(self._answers, 30, "the web server to answer")
        return self

    def manage(self, *args):
        """Run a management command in the server's environment (its database)."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env_for_commands,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def _answers(self):
        try:
            with urllib.request.urlopen(self.url + "/api/", timeout=5):
                return True
        except (OSError, urllib.error.HTTPError):
            return False


class Gunicorn(WebServer):
    """The hub as production runs it: gunicorn (hub/gunicorn.conf.py) with DJANGO_DEBUG
    off and the static files collected for whitenoise. Requests must carry
    `X-Forwarded-Proto: https`, as they do behind the TLS proxy."""

    SECRET = "test-only-secret-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFG"

    def __init__(self, tmp_path, media, workers=1, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        prod = {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": self.SECRET,
            "MOECOLLAB_STATIC_ROOT": str(tmp_path / "static"),
            "WEB_BIND": f"127.0.0.1:{self.port}",
            "WEB_WORKERS": str(workers),
            **env,
        }
        self.env_for_commands = hub_env(tmp_path, media, **prod)
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        args = [gunicorn, "hub.wsgi", "-c", "hub/gunicorn.conf.py"]
        log = tmp_path / f"gunicorn-{self.port}.log"
        Process.__init__(self, args, self.env_for_commands, log, "Booting worker")

    def start(self, timeout=60):
        self.manage("collectstatic", "--noinput")
        return super().start(timeout)

    def _answers(self):
        try:
            request = urllib.request.Request(
                self.url + "/health/", headers={"X-Forwarded-Proto": "https"}
            )
            with urllib.request.urlopen(request, timeout=5):
                return True
        except (OSError, urllib.error.HTTPError):
            return False


class RedisServer:
    """A redis-server of the test's own on a free port, to stop and start at will."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp_path / f"redis-{self.port}"
        self.dir.mkdir()
        self.proc = None

    def start(self):
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.answers, 20, "redis-server to answer")
        return self

    def answers(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


class Browserless:
    """An HTTP client with cookies and CSRF for a web server in another process."""

    def __init__(self, base_url: str):
        self.base = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def cookie(self, name):
        return next((c.value for c in self.jar if c.name == name), None)

    def request(self, method, path, data=None, headers=None, timeout=60):
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        req = urllib.request.Request(
            self.base + path, data=body, headers=headers or {}, method=method
        )
        if isinstance(data, dict):
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(req, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def log_in(self, username, password):
        self.request("GET", "/accounts/login/")
        status, _ = self.post_form("/accounts/login/", {"username": username, "password": password})
        assert status == 302, f"log-in of {username} answered {status}"

    def post_form(self, path, data):
        token = self.cookie("csrftoken")
        return self.request(
            "POST", path, {**data, "csrfmiddlewaretoken": token}, {"Referer": self.base + path}
        )


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = "----moecollab-test-boundary"
    parts = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    for name, (filename, content) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload_over_http(url: str, token: str, path: Path, domain: str = "weather"):
    """POST an expert file to a hub's API as a client on the network does: (status, body)."""
    body, content_type = multipart(
        {"mixture": "weather-food", "domain": domain, "name": path.stem},
        {"file": (path.name, path.read_bytes())},
    )
    return Browserless(url).request(
        "POST",
        "/api/experts/",
        body,
        {"Authorization": f"Token {token}", "Content-Type": content_type},
    )
