"""Mixtures, domains, experts and compositions (Django app)."""
