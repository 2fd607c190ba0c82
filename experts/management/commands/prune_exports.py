"""Free disk space: remove the Hugging Face exports (and their zips) of old compositions.

An export is rebuilt from the composition's own files by a worker when it is next
downloaded, and byte for byte the same, so pruning loses nothing. Kept: each mixture's current
composition and its newest `--keep` versions.
"""

from __future__ import annotations

import shutil

from django.core.management.base import BaseCommand

from ...models import Mixture
from ...services.storage import export_folder, zip_path


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
                targets = [export_folder(composition), zip_path(composition)]
                for path in targets:
                    if not path.exists():
                        continue
                    files = [path] if path.is_file() else list(path.rglob("*"))
                    freed += sum(p.stat().st_size for p in files if p.is_file())
                    removed += 1
                    if not dry_run:
                        shutil.rmtree(path) if path.is_dir() else path.unlink()
        verb = "would free" if dry_run else "freed"
        self.stdout.write(f"{removed} exports and zips, {verb} {freed / 1e6:.1f} MB")
