"""Causal language-model mixtures (see kind.py for the `MixtureKind`)."""
