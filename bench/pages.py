"""Pages and API lists under a big mixture: p50/p95 over loopback and SQL queries per page.

Seeds a mixture with 1,000 experts from 100 contributors, their validation
jobs and 51 compositions into a fresh database (SQLite in a temporary folder
unless --database names another, for example the local PostgreSQL), starts the
hub's web process on it, and requests each page from several connections at
once. Query counts come from the same requests made in this process.

    .venv/bin/python bench/pages.py [--experts 1000] [--requests 60] [--connections 4]
        [--database postgres://postgres@127.0.0.1:5432/bench]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DOMAINS = {
    "bbc": ["business", "entertainment", "politics", "sport", "tech"],
    "reuters": ["acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"],
    "newsgroups": ["comp", "rec", "sci", "talk"],
    "rotten": ["fresh", "rotten"],
}


def seed(n_experts: int, n_compositions: int) -> dict:
    from django.contrib.auth.models import User

    from experts.models import BaseModel, Composition, Domain, Expert, Job, Mixture

    rng = random.Random(0)
    users = User.objects.bulk_create(
        [User(username=f"user{i}", email=f"user{i}@example.org") for i in range(100)]
    )
    maintainer = User.objects.create_user("maintainer", "m@example.org", "pw", is_staff=True)
    base = BaseModel.objects.create(
        name="sentence-transformers/all-MiniLM-L6-v2",
        hidden_size=384,
        num_layers=6,
        intermediate_size=1536,
    )
    mixture = Mixture.objects.create(slug="big", name="Big mixture", base_model=base)
    mixture.maintainers.add(maintainer)
    domains = [
        Domain.objects.create(
            mixture=mixture, name=name, labels=labels, router_count=600, eval_count=600
        )
        for name, labels in DOMAINS.items()
    ]
    statuses = ["accepted"] * 8 + ["rejected", "uploaded"]
    experts = Expert.objects.bulk_create(
        [
            Expert(
                owner=users[i % len(users)],
                mixture=mixture,
                domain=domains[i % len(domains)],
                name=f"expert {i}",
                architecture="head",
                file=f"experts/{i:032x}.safetensors",
                sha256=f"{i:064x}",
                size=600_000,
                status=statuses[i % len(statuses)],
                metrics={"accuracy": rng.random(), "macro_f1": rng.random()},
                report={"summary": "seeded"},
            )
            for i in range(n_experts)
        ]
    )
    Job.objects.bulk_create(
        [
            Job(action="validate", mixture=mixture, expert=e, status="succeeded", progress=100)
            for e in experts
        ]
    )
    accepted = [e for e in experts if e.status == "accepted"]
    for v in range(1, n_compositions + 1):
        members = accepted[: max(1, len(accepted) * v // n_compositions)]
        load = [1 / len(members)] * len(members)
        composition = Composition.objects.create(
            mixture=mixture,
            version=v,
            expert_shas=[e.sha256 for e in members],
            is_current=v == n_compositions,
            metrics={
                "overall": {"n": 2400, "accuracy": 0.8 + v / 1000, "macro_f1": 0.8},
                "domains": {d.name: {"n": 600, "accuracy": 0.8, "macro_f1": 0.8} for d in domains},
                "domain_order": [d.name for d in domains],
                "utilisation": {"load": load, "entropy": 1.0, "under_1pct": 0},
                "routing_matrix": [[1 / len(members)] * len(members) for _ in domains],
            },
            contributions={
                str(e.pk): {"drop": rng.random() / 100, "share": 1 / len(members)} for e in members
            },
        )
        composition.experts.set(members)
    return {
        "mixture": mixture,
        "expert": accepted[0],
        "owner": accepted[0].owner,
        "maintainer": maintainer,
        "version": n_compositions,
    }


def pages(world) -> list[tuple[str, str, object]]:
    """(name, path, who asks) for every page and API list."""
    m, v = world["mixture"].slug, world["version"]
    owner, maintainer = world["owner"], world["maintainer"]
    return [
        ("home", "/", None),
        ("mixture", f"/m/{m}/", None),
        ("mixture (maintainer)", f"/m/{m}/", maintainer),
        ("leaderboard", f"/m/{m}/leaderboard/", None),
        ("leaderboard, one domain", f"/m/{m}/leaderboard/?domain=bbc&page=2", None),
        ("composition", f"/m/{m}/v{v}/", None),
        ("expert", f"/experts/{world['expert'].pk}/", None),
        ("review queue", "/review/", maintainer),
        ("profile", "/accounts/profile/", owner),
        ("api mixtures", "/api/mixtures/", None),
        ("api domains", "/api/domains/", None),
        ("api experts", "/api/experts/", None),
        ("api experts (maintainer)", "/api/experts/", maintainer),
        ("api compositions", "/api/compositions/", None),
        ("api jobs (maintainer)", "/api/jobs/", maintainer),
    ]


def session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def query_count(path: str, user) -> tuple[int, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    if user is not None:
        client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return len(queries), len(response.content)


def timings(url: str, cookie: str | None, requests: int, connections: int) -> list[float]:
    headers = {"Cookie": cookie} if cookie else {}

    def one(_):
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
            r.read()
        return time.perf_counter() - started

    for _ in range(3):  # warm up
        one(0)
    with ThreadPoolExecutor(connections) as pool:
        return list(pool.map(one, range(requests)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experts", type=int, default=1000)
    parser.add_argument("--compositions", type=int, default=51)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--database", default="", help="a database URL (default: SQLite)")
    args = parser.parse_args(argv)

    var = tempfile.mkdtemp(prefix="moecollab-bench-pages-")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        MOECOLLAB_VAR_DIR=var,
        DJANGO_SETTINGS_MODULE="hub.settings",
        # the API throttles would answer 429 to a benchmark: lift them for it
        API_THROTTLE_ANON="1000000/min",
        API_THROTTLE_USER="1000000/min",
        # as in production: no debug bookkeeping (plain HTTP on loopback)
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        DJANGO_SECURE_SSL_REDIRECT="0",
    )
    if args.database:
        env["DATABASE_URL"] = args.database
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    if args.database:
        call_command("flush", "--noinput", verbosity=0)
    started = time.perf_counter()
    world = seed(args.experts, args.compositions)
    print(
        f"seeded {args.experts} experts, {args.compositions} compositions in "
        f"{time.perf_counter() - started:.1f} s on {django.db.connection.vendor}"
    )

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        # the API throttles would answer 429 to a benchmark: lift them for it
        env=env,
        stdout=open(Path(var) / "web.log", "w"),
        stderr=subprocess.STDOUT,
    )
    print(f"web server log: {Path(var) / 'web.log'}")
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.3)
        print(
            f"\n{'page':28} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8} {'KB':>7}"
            f"   ({args.requests} requests, {args.connections} connections)"
        )
        for name, path, user in pages(world):
            queries, size = query_count(path, user)
            cookie = session_cookie(user) if user is not None else None
            times = sorted(
                timings(f"http://127.0.0.1:{port}{path}", cookie, args.requests, args.connections)
            )
            p50 = statistics.median(times) * 1000
            p95 = times[int(0.95 * (len(times) - 1))] * 1000
            print(f"{name:28} {p50:8.1f} {p95:8.1f} {queries:8d} {size / 1024:7.1f}")
    finally:
        server.terminate()
        server.wait(20)


if __name__ == "__main__":
    main()
