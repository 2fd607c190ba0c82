"""Register a base model that mixtures may use (its sizes are read from its config)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from routing.kinds import DEFAULT_KIND, KINDS

from ...services.basemodels import register_base_model


class Command(BaseCommand):
    help = "Register a base model (Hugging Face id, local folder or packaged model) by kind"

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--kind",
            "--task",  # its name before 0.2
            dest="kind",
            choices=list(KINDS),
            default=DEFAULT_KIND,
            help="the kind of mixture it serves",
        )
        parser.add_argument("--revision", default="")
        parser.add_argument("--licence", default="apache-2.0")
        parser.add_argument(
            "--fingerprint",
            action="store_true",
            help="also load the weights to record their fingerprint (experts are checked "
            "against it from the upload on)",
        )

    def handle(self, *args, name, kind, revision, licence, fingerprint, **options):
        digest = ""
        if fingerprint:
            from routing.kinds import get_kind

            digest = getattr(
                get_kind(kind).load_base(name, revision=revision or None), "weights_fingerprint", ""
            )
        try:
            base = register_base_model(
                name, kind, revision=revision, licence=licence, fingerprint=digest
            )
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the config of {name!r}: {exc}") from None
        self.stdout.write(
            f"{base.name}: {base.get_kind_display().lower()}, hidden size "
            f"{base.hidden_size}, {base.num_layers} layers"
            + (f", fingerprint {base.fingerprint[:16]}" if base.fingerprint else "")
        )
