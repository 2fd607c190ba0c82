"""Compositions as Hugging Face model folders: the export (written by a worker, never in
a web request), its zip, and what its model card says about the composition."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from routing.basemodels import on_hub
from routing.formats import formats
from routing.light import write_light
from routing.model_card import CardInfo, Contributor

from ..models import Composition, Job, private_storage
from .archives import folder_entries
from .archives import zip_size as zip_size_of
from .jobs import end_job, job_composition, progress, run
from .queueing import once_per_composition
from .resources import kind_of, load_model
from .storage import (
    FORMATS,
    FULL,
    LIGHT,
    ExportFormat,
    download_name,
    download_ready,
    download_size,
    export_entries,
    export_folder,
    is_stored,
    put_folder,
    staging_folder,
)

log = logging.getLogger(__name__)


class ExportError(Exception):
    """A composition that cannot be exported; the message says why."""


def public_url(path: str) -> str:
    """The site's public address of a page, or '' when the hub knows none: a model card
    on the Hub must not send its readers to someone's loopback address."""
    host = urlsplit(settings.MOECOLLAB_SITE_URL).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
        return ""
    return settings.MOECOLLAB_SITE_URL + path


def card_info(composition: Composition) -> CardInfo:
    """What the model card says about a composition, from the hub's records."""
    mixture = composition.mixture
    experts = {e.sha256: e for e in composition.experts.select_related("owner", "domain")}
    contributions = composition.contributions or {}
    contributors = []
    for sha in composition.expert_shas:
        expert = experts.get(sha)
        if expert is None:
            continue
        measured = contributions.get(str(expert.pk), {})
        contributors.append(
            Contributor(
                expert=expert.name,
                user=expert.owner.username,
                domain=expert.domain.name,
                architecture=expert.architecture,
                licence=expert.licence,
                sha256=expert.sha256,
                share=measured.get("share"),
                drop=measured.get("drop"),
                url=public_url(expert.get_absolute_url()),
            )
        )
    domains = mixture.domains.filter(name__in=[c.domain for c in contributors])
    covered = set((composition.metrics or {}).get("domains", {}))
    return CardInfo(
        title=f"{mixture.name} v{composition.version}",
        description=mixture.description,
        repo_id=repo_id_for(mixture),
        mixture=mixture.slug,
        version=composition.version,
        base_licence=mixture.base_model.licence,
        contributors=contributors,
        # packaged datasets name a dataset; an uploaded file's name names nothing
        datasets={d.name: d.source for d in domains if d.source.startswith("packaged ")},
        source_url=public_url(composition.get_absolute_url()),
        metrics=composition.metrics or None,
        missing_domains=missing_domains(composition, covered),
    )


def missing_domains(composition: Composition, covered: set[str] | None = None) -> list[str]:
    """The mixture's domains that this composition has no expert for."""
    if covered is None:
        covered = set((composition.metrics or {}).get("domains", {}))
    names = composition.mixture.domains.values_list("name", flat=True)
    return sorted(set(names) - covered)


def repo_id_for(mixture) -> str:
    """The mixture's Hub repository: its own setting, else `<namespace>/<slug>`."""
    if mixture.hub_repo_id:
        return mixture.hub_repo_id
    if settings.MOECOLLAB_HF_NAMESPACE:
        return f"{settings.MOECOLLAB_HF_NAMESPACE}/{mixture.slug}"
    return ""


def default_format(composition: Composition) -> ExportFormat:
    """What "Download" and publishing give: the light export where its base is on the Hub
    (anyone can fetch it), else the full folder with the base's weights."""
    return LIGHT if on_hub(composition.mixture.base_model.name) else FULL


def offered_formats(composition) -> list[dict]:
    """The kind's formats of this composition, with whether each is the default, its
    download address (`?format=`), what it downloads as (`label`) and, once written, the
    size of the download."""
    default = default_format(composition)
    out = []
    for entry in formats(composition.mixture.kind_info, composition.metrics or {}):
        fmt = FORMATS.get(entry["name"])
        entry = {**entry, "default": fmt is default, "ready": False, "bytes": None}
        if entry["reason"] is None and fmt is not None:
            entry.update(
                ready=download_ready(composition, fmt),
                bytes=download_size(composition, fmt),
                url=composition.get_absolute_url() + f"download/?format={fmt.name}",
                label=f"{fmt.name} {'zip' if fmt.zipped else 'file'}",
            )
        out.append(entry)
    return out


def format_refusal(composition, fmt: ExportFormat) -> str | None:
    """Why this composition does not download in `fmt` (None: it does)."""
    entry = next(f for f in formats(composition.mixture.kind_info, composition.metrics or {})
                 if f["name"] == fmt.name)  # fmt: skip
    return entry["reason"]


def ensure_export(composition: Composition, model=None, fmt: ExportFormat = FULL) -> Path:
    """The composition's export in `fmt` as a local folder, written and stored first (with
    its zip) when the storage has none (in a worker: it loads the composition)."""
    if download_ready(composition, fmt):
        return export_folder(composition, fmt)
    if not is_stored(composition):
        raise ExportError("this composition has no stored files to export")
    if model is None:
        model = load_model(composition)
    kind = kind_of(composition.mixture)
    staging = staging_folder()
    if fmt is LIGHT:
        write_light(kind, model, staging / fmt.folder, card_info(composition))
    else:
        kind.export(model, staging / fmt.folder, card_info(composition))
    name = download_name(composition, fmt)
    size = zip_size_of(folder_entries(staging / fmt.folder, Path(name).stem))
    put_folder(
        staging,
        composition.folder,
        fmt.manifest,
        shared=True,
        extra={"zip": {"name": name, "size": size}},
    )  # the manifest last
    return export_folder(composition, fmt)


def zip_entries(composition: Composition, fmt: ExportFormat, manifest: dict) -> list:
    """The stored export's files (its `manifest`) as the entries of its zip (see
    services.archives)."""
    storage = private_storage()
    top = Path(download_name(composition, fmt)).stem
    return [(f"{top}/{name}", e["size"], lambda e=e: storage.open(e["stored"], "rb"))
            for name, e in export_entries(composition, fmt, manifest).items()]  # fmt: skip


def export_now(composition: Composition, model=None) -> None:
    """Write the light export and the default download right after a retrain (the full
    folder waits for its first download where the light one is the default, so that a hub
    does not store its base's weights once per version); a failure only delays it to the
    export job that the first download asks for."""
    for fmt in dict.fromkeys((LIGHT, default_format(composition))):
        try:
            ensure_export(composition, model, fmt)
        except Exception:
            log.exception("exporting %s (%s) failed; it will be exported on demand",
                          composition, fmt.name)  # fmt: skip


def enqueue_export(composition: Composition) -> Job:
    """Queue the export of a composition whose download is missing (the web process never
    loads a model); an export already waiting or running is returned, not doubled."""
    return once_per_composition(
        composition, Job.Action.EXPORT, "waiting for a worker to prepare the download"
    )


def export(job_id: int) -> Composition | None:
    """The export job (a Celery task body): export a composition whose export is missing."""
    return run(job_id, _export, what="exporting", soft_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT)


def _export(job: Job) -> Composition | None:
    composition = job_composition(job)
    try:
        if not is_stored(composition):
            raise ExportError("this composition has no stored files to export")
        model = None
        for fmt, percent in ((LIGHT, 10), (FULL, 40)):
            if not download_ready(composition, fmt):
                progress(job, percent, f"writing the {fmt.name} export")
                model = model or load_model(composition)
                ensure_export(composition, model, fmt)
    except ExportError as exc:
        end_job(job, Job.Status.FAILED, str(exc)[:300], str(exc))
        return None
    end_job(job, Job.Status.SUCCEEDED, "the download is ready")
    return composition
