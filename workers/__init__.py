"""Celery tasks: thin wrappers around the services in `experts` and `routing`."""
