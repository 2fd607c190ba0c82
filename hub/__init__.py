"""MoECollab Hub: the Django project (settings, URLs, Celery app, pages)."""

from .celery import app as celery_app

__all__ = ["celery_app"]
