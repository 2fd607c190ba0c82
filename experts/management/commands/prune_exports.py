"""Free disk space: remove the full exports and GGUF files of old compositions (their light
exports, a few MB, stay), then the stored files that no export names any more (each is
stored once per hub: see services.shared).

An export is rebuilt from the composition's own files by a worker when it is next
downloaded, so pruning loses nothing. It works on either storage (local files or a
bucket). Kept: each mixture's current composition and its newest `--keep` versions.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ...models import Composition, Mixture
from ...services.shared import blobs_of, collect
from ...services.storage import FORMATS, FULL, GGUF, delete_prefix, export_manifest


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
                manifests = {f: export_manifest(composition, f) for f in (FULL, GGUF)}
                manifests = {f: m for f, m in manifests.items() if m is not None}
                removed += bool(manifests)
                for fmt, manifest in manifests.items():
                    if dry_run:
                        freed += sum(e["size"] for e in manifest["files"].values()
                                     if not e.get("blob"))  # fmt: skip
                    else:
                        freed += delete_prefix(composition.folder, manifest, fmt.manifest)
        blobs = 0
        if not dry_run:  # what still names a shared file keeps it
            referenced = set()
            for composition in Composition.objects.exclude(folder=""):
                for fmt in FORMATS.values():
                    referenced |= blobs_of(export_manifest(composition, fmt))
            blobs, shared = collect(referenced)
            freed += shared
        verb = "would free" if dry_run else "freed"
        self.stdout.write(f"removed the exports of {removed} compositions and {blobs} shared "
                          f"files no export names, {verb} {freed / 1e6:.1f} MB")  # fmt: skip
