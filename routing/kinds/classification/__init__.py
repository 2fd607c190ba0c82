"""Text classification mixtures (see kind.py for the `MixtureKind`)."""
