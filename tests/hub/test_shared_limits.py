"""Limits hold across web processes: their counters live in the shared cache (Redis)."""

import pytest

from tests.hub.processes import Browserless, WebServer

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_the_log_in_limit_holds_across_two_web_processes(alice, tmp_path, media):
    limits = {"MOECOLLAB_LOGIN_RATE_ACCOUNT": "4/h"}
    servers = [WebServer(tmp_path, media, **limits).start() for _ in range(2)]
    try:
        codes = []
        for attempt in range(4):  # two wrong passwords on each process
            client = Browserless(servers[attempt % 2].url)
            client.request("GET", "/accounts/login/")
            status, _ = client.post_form(
                "/accounts/login/", {"username": "alice", "password": f"wrong{attempt}"}
            )
            codes.append(status)
        client = Browserless(servers[0].url)
        client.request("GET", "/accounts/login/")
        status, body = client.post_form(
            "/accounts/login/", {"username": "alice", "password": "pw-alice-123"}
        )
    finally:
        for server in servers:
            server.stop()
    assert codes == [200] * 4
    assert status == 429 and b"Too many log-in attempts" in body
