"""The hub as production runs it: gunicorn with DJANGO_DEBUG off serves the pages and
the static files (whitenoise), answers the health check, logs JSON, and its API
throttles count in the shared cache across web processes; `check --deploy` is clean."""

import json
import re
import subprocess
import sys

import pytest

from tests.hub.processes import ROOT, Browserless, Gunicorn, RedisServer, WebServer, hub_env

pytestmark = [pytest.mark.django_db(transaction=True)]
HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS proxy in front adds


def get(server, path, **headers):
    return Browserless(server.url).request("GET", path, headers={**HTTPS, **headers})


def test_gunicorn_serves_pages_static_files_and_its_health_with_debug_off(tmp_path, media):
    server = Gunicorn(tmp_path, media, workers=2, LOG_FORMAT="json").start()
    try:
        status, body = get(server, "/")
        assert status == 200 and b"MoECollab" in body
        assert get(server, "/", **{"X-Forwarded-Proto": "http"})[0] == 301  # to https

        status, body = get(server, "/api/docs/")
        assert status == 200
        script = re.search(rb'src="(/static/drf_spectacular_sidecar/[^"]+bundle[^"]*\.js)"', body)
        status, js = get(server, script.group(1).decode())
        assert status == 200 and len(js) > 100_000  # Swagger UI itself, not an error page

        status, body = get(server, "/admin/login/")
        sheet = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', body)  # hashed
        assert status == 200 and sheet, body[:500]
        status, css = get(server, sheet.group(1).decode())
        assert status == 200 and b"body" in css

        status, body = get(server, "/health/")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok"
        assert {name: c["ok"] for name, c in health["checks"].items()} == {
            "database": True,
            "broker": True,
            "storage": True,
        }
        assert get(server, "/no-such-page/")[0] == 404
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log.read_text().splitlines()]  # JSON, all
    access = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert {"/", "/health/", "/admin/login/"} <= {a["path"] for a in access}
    assert all(a["status"].isdigit() for a in access)
    assert any(line["logger"] == "django.request" and line["status_code"] == 404 for line in lines)


def test_the_health_check_names_a_broker_that_is_down_and_answers_503(tmp_path, media):
    redis = RedisServer(tmp_path).start()
    server = WebServer(tmp_path, media, REDIS_URL=redis.url).start()
    try:
        assert json.loads(Browserless(server.url).request("GET", "/health/")[1])["status"] == "ok"
        redis.stop()
        status, body = Browserless(server.url).request("GET", "/health/")
    finally:
        server.stop()
        redis.stop()
    health = json.loads(body)
    assert status == 503 and health["status"] == "unavailable"
    assert health["checks"]["broker"]["ok"] is False and health["checks"]["database"]["ok"]
    assert "redis://" not in body.decode()  # what is down, never where or with what secret


def test_api_throttles_hold_across_two_gunicorn_processes(tmp_path, media):
    limits = {"API_THROTTLE_ANON": "6/min"}
    servers = [Gunicorn(tmp_path, media, **limits).start() for _ in range(2)]
    try:
        codes = [get(servers[i % 2], "/api/mixtures/")[0] for i in range(8)]
    finally:
        for server in servers:
            server.stop()
    assert codes == [200] * 6 + [429] * 2


def test_check_deploy_is_clean_in_production(tmp_path, media):
    env = hub_env(tmp_path, media, DJANGO_DEBUG="0", DJANGO_SECRET_KEY=Gunicorn.SECRET)
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "no issues" in done.stdout
