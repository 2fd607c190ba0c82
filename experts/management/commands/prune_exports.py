"""Free disk space: remove the full exports and GGUF files of old compositions (their light
exports, a few MB, stay), then the stored files that no export names any more (each is
stored once per hub: see services.shared).

An export is rebuilt from the composition's own files by a worker when it is next
downloaded, so pruning loses nothing. It works on either storage (local files or a
bucket). Kept: each mixture's current composition and its newest `--keep` versions.
"""

from __future__ import annotations

from django.conf import settings
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
        going = []  # (composition, format, manifest) of every export that goes
        for mixture in Mixture.objects.all():
            compositions = list(mixture.compositions.order_by("-version"))
            for composition in compositions[keep:]:
                if composition.is_current or not composition.folder:
                    continue
                for fmt in (FULL, GGUF):
                    manifest = export_manifest(composition, fmt)
                    if manifest is not None:
                        going.append((composition, fmt, manifest))
        removed = len({composition.pk for composition, _, _ in going})
        if dry_run:
            self.stdout.write(self.dry_run(going, removed))
            return
        freed = sum(delete_prefix(c.folder, m, fmt.manifest) for c, fmt, m in going)
        blobs, shared = collect(self.referenced())  # what still names a shared file keeps it
        freed += shared
        self.stdout.write(f"removed the exports of {removed} compositions and {blobs} shared "
                          f"files no export names, freed {freed / 1e6:.1f} MB")  # fmt: skip

    @staticmethod
    def referenced(skip: set[tuple[int, str]] = frozenset()) -> set[str]:
        """The shared files named by every stored export but those in `skip` ((composition
        id, format name) pairs)."""
        names = set()
        for composition in Composition.objects.exclude(folder=""):
            for fmt in FORMATS.values():
                if (composition.pk, fmt.name) not in skip:
                    names |= blobs_of(export_manifest(composition, fmt))
        return names

    def dry_run(self, going: list, removed: int) -> str:
        """What a run would free: the exports' own files, and the shared files that only
        they name (deleted once older than the grace period)."""
        kept = self.referenced({(c.pk, fmt.name) for c, fmt, _ in going})
        own, shared = 0, {}
        for _, _, manifest in going:
            for entry in manifest["files"].values():
                if not entry.get("blob"):
                    own += entry["size"]
                elif entry["blob"] not in kept:
                    shared[entry["blob"]] = entry["size"]
        return (
            f"would remove the exports of {removed} compositions and {len(shared)} shared "
            f"files only they name, freeing {(own + sum(shared.values())) / 1e6:.1f} MB "
            f"(shared files once older than {settings.MOECOLLAB_SHARED_GRACE_SECONDS} s)"
        )
