"""The forms a composition downloads in, for the hub's pages and API (no torch)."""

from __future__ import annotations


def formats(info, metrics: dict) -> list[dict]:
    """Every form a composition of kind `info` with these metrics downloads in: `name`,
    `title`, the engines that run it, and `reason` (why it is not offered) or None."""
    remote = info.remote_code(metrics)
    code = " (trust_remote_code=True)" if remote else " (no remote code)"
    return [
        {"name": "light", "title": "Light: experts and router, no base weights", "reason": None,
         "engines": ["MoECollab routing library (fetches or finds the base)"]},
        {"name": "full", "title": "Full transformers folder, base weights included",
         "reason": None, "engines": [f"transformers {info.auto_class}{code}"]},
        {"name": "gguf", "title": "GGUF for llama.cpp", "engines": ["llama.cpp"],
         "reason": info.gguf_refusal(metrics)},
    ]  # fmt: skip
