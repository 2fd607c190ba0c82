"""Where the files of compositions and their downloads live (paths only: no model is
loaded here)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from ..models import Composition, Mixture


def folder_name(mixture: Mixture, version: int) -> str:
    """A composition's folder, relative to MEDIA_ROOT (what `Composition.folder` stores)."""
    return f"compositions/{mixture.slug}/v{version}"


def stored_folder(composition: Composition) -> Path:
    return Path(settings.MEDIA_ROOT) / composition.folder


def is_stored(composition: Composition) -> bool:
    """Whether the composition's own files are there (an export is made from them)."""
    return bool(composition.folder) and stored_folder(composition).is_dir()


def export_folder(composition: Composition) -> Path:
    """The composition as a Hugging Face model folder (see services.exports)."""
    return stored_folder(composition) / "hf"


def export_files(composition: Composition) -> list[Path]:
    """The export's files, when the export is complete; [] otherwise (a kind's export
    appears whole: it is written beside and renamed into place)."""
    folder = export_folder(composition)
    if not composition.folder or not (folder / "config.json").is_file():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file())


def zip_name(composition: Composition) -> str:
    return f"{composition.mixture.slug}-v{composition.version}.zip"


def zip_path(composition: Composition) -> Path:
    return stored_folder(composition) / zip_name(composition)


def download_ready(composition: Composition) -> bool:
    return bool(export_files(composition)) and zip_path(composition).is_file()
