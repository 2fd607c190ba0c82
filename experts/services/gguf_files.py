"""A composition's GGUF file for llama.cpp, written by a worker with llama.cpp's own
converter from the full export (a standard Mixtral checkpoint) the first time someone asks
for it: never with every version, since it holds the base's weights in a form no other
version shares (`prune_exports` deletes old versions' files)."""

from __future__ import annotations

import shutil

from django.conf import settings

from routing.gguf import DEFAULT_TYPE, GGUFError, write_gguf

from ..models import Composition, Job
from .exports import ExportError, enqueue_export, ensure_export, format_refusal
from .jobs import end_job, job_composition, progress, run
from .queueing import once_per_composition
from .storage import (
    FULL,
    GGUF,
    ExportFormat,
    download_name,
    download_ready,
    is_stored,
    put_folder,
    staging_folder,
)


def download_action(fmt: ExportFormat) -> str:
    """The job that writes a missing download in `fmt`: a GGUF job or an export."""
    return Job.Action.GGUF if fmt is GGUF else Job.Action.EXPORT


def enqueue_download(composition: Composition, fmt: ExportFormat) -> Job:
    """Queue the job that writes the composition's missing download in `fmt` (the GGUF
    file, or the export); one already waiting or running is returned, not doubled."""
    if fmt is not GGUF:
        return enqueue_export(composition)
    return once_per_composition(
        composition, Job.Action.GGUF, "waiting for a worker to write the GGUF file"
    )


def build_gguf(job_id: int) -> Composition | None:
    """The GGUF job (a Celery task body)."""
    return run(job_id, _build, what="writing the GGUF file",
               soft_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT)  # fmt: skip


def _build(job: Job) -> Composition | None:
    composition = job_composition(job)
    try:
        if not download_ready(composition, GGUF):
            write(composition, job)
    except (ExportError, GGUFError) as exc:
        end_job(job, Job.Status.FAILED, str(exc)[:300], str(exc))
        return None
    end_job(job, Job.Status.SUCCEEDED, "the GGUF file is ready")
    return composition


def write(composition: Composition, job: Job) -> None:
    """Write and store the GGUF file (the full export first, when it is missing); the
    manifest is stored last, so that a killed worker leaves nothing that looks ready."""
    reason = format_refusal(composition, GGUF)
    if reason:
        raise ExportError(reason)
    if not is_stored(composition):
        raise ExportError("this composition has no stored files to export")
    if not download_ready(composition, FULL):
        progress(job, 5, "writing the full export (llama.cpp's converter reads it)")
    full = ensure_export(composition, fmt=FULL)
    progress(job, 40, f"converting the full export to GGUF ({DEFAULT_TYPE})")
    staging = staging_folder()
    out = staging / GGUF.folder / download_name(composition, GGUF)
    try:
        write_gguf(full, out, DEFAULT_TYPE, timeout=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT)
    except BaseException:  # a failed or interrupted conversion leaves no half-written file
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(job, 90, "storing the GGUF file")
    put_folder(staging, composition.folder, GGUF.manifest, shared=True)
