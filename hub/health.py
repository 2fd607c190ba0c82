"""`GET /health/`: whether this web process can reach what the hub needs (the database,
the broker and the file storage), for load balancers and monitors.

200 with every check's outcome when all pass; 503 naming what failed otherwise. It says
what is down, never a password or an address (the message is the exception's class).
"""

from __future__ import annotations

import time

from django.core.files.storage import storages
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    from celery import current_app

    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _storage() -> None:
    storages["default"].exists("health-probe")  # one round trip; nothing is written


CHECKS = {"database": _database, "broker": _broker, "storage": _storage}


@never_cache
@require_GET
def health(request):
    results, healthy = {}, True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # any failure is this check's answer, never a 500
            healthy = False
            results[name] = {"ok": False, "error": type(exc).__name__}
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": results},
        status=200 if healthy else 503,
    )
