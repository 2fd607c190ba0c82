"""A small Hugging Face Hub-compatible server for tests, benchmarks and offline trials
(see server.py)."""

from .server import HubServer

__all__ = ["HubServer"]
