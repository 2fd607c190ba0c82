"""Reading stored evaluation reports (plain dicts, no torch: the web pages use it)."""

from __future__ import annotations


def matrix_rows(metrics: dict) -> list[str]:
    """The domains that name the routing matrix's rows, in the matrix's order."""
    return list(metrics.get("domain_order") or metrics.get("domains", {}))
