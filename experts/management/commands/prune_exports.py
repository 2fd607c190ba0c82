"""Free disk space: remove the Hugging Face exports (and their zips) of old compositions.

An export is rebuilt from the composition's own files by a worker when it is next
downloaded, so pruning loses nothing. It works on either storage (local files or a
bucket). Kept: each mixture's current composition and its newest `--keep` versions.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ...models import Mixture
from ...services.storage import EXPORT_MANIFEST, delete_prefix, export_manifest


class Command(BaseCommand):
    help = "Remove the exports of all but the newest compositions of each mixture"

    def add_arguments(self, parser):
        parser.add_argument("--keep", type=int, default=3, help="newest versions kept per mixture")
        parser.add_argument("--dry-run", action="store_true", help="only say what would go")

    def handle(self, *args, keep: int, dry_run: bool, **options):
        freed = removed = 0
        for mixture in Mixture.objects.all():
            compositions = list(mixture.compositions.order_by("-version"))
            for composition in compositions[keep:]:
                if composition.is_current or not composition.folder:
                    continue
                manifest = export_manifest(composition)
                if manifest is None:
                    continue
                removed += 1
                if dry_run:
                    freed += sum(e["size"] for e in manifest["files"].values())
                else:
                    freed += delete_prefix(composition.folder, manifest, EXPORT_MANIFEST)
        verb = "would free" if dry_run else "freed"
        self.stdout.write(f"removed the exports of {removed} compositions, {verb} "
                          f"{freed / 1e6:.1f} MB")  # fmt: skip
