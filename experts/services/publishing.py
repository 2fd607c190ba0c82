"""Publishing compositions to the Hugging Face Hub.

Publishing is idempotent. A composition's export is deterministic, so a
retried commit of an export that already landed changes no file and
`huggingface_hub` makes no second commit; the version tag (`v3`) marks a
finished publication, and a retry that finds it only records it. Transient
errors (HTTP 429 and 5xx, timeouts, dropped connections) are retried with
exponential backoff; a refused token fails at once with a message for the
composition page. The token never leaves this process and is scrubbed from
every message that is stored or logged.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

from ..models import Composition, Job
from .exports import ExportError, default_format, ensure_export, public_url, repo_id_for
from .jobs import end_job, job_composition, progress, run, scrub
from .queueing import once_per_composition

log = logging.getLogger(__name__)


class PublishError(Exception):
    """A failure that retrying cannot fix; its message is shown on the composition page."""


def hub_configured() -> bool:
    return bool(settings.MOECOLLAB_HF_TOKEN)


def enqueue_publish(composition: Composition) -> Job | None:
    """Queue the composition's publication to the Hub; None when publishing is not
    configured. A publication already waiting or running is returned, not doubled."""
    if not hub_configured():
        return None

    def mark_queued():
        Composition.objects.filter(pk=composition.pk).update(
            hub_status=Composition.Publish.QUEUED, hub_error=""
        )

    return once_per_composition(
        composition, Job.Action.PUBLISH, "waiting for a publishing worker", mark_queued
    )


def publish_refusal(mixture) -> str:
    """Why the mixture's compositions cannot be published now; '' when they can (the one
    answer to "can this be published?", for the pages, the API and the worker)."""
    if not hub_configured():
        return "Publishing is not configured on this hub (no Hugging Face token)."
    if not repo_id_for(mixture):
        return "The mixture has no Hub repository id; set it under Hub publishing settings."
    return ""


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: Exception) -> bool:
    import httpx2

    status = _status(exc)
    if status is not None:
        return status == 429 or status >= 500
    return isinstance(exc, (httpx2.TimeoutException, httpx2.NetworkError, ConnectionError))


def explain(exc: Exception) -> str:
    """A message a maintainer can act on, without the token."""
    status = _status(exc)
    endpoint = settings.MOECOLLAB_HF_ENDPOINT
    if status in (401, 403):
        return scrub(
            f"The Hub at {endpoint} refused the token (HTTP {status}). Check that "
            "MOECOLLAB_HF_TOKEN is a valid token with write access to the repository; "
            "nothing was published."
        )
    if status is not None:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return scrub(f"The Hub at {endpoint} answered HTTP {status}: {first}")
    if is_transient(exc):
        return scrub(f"Could not reach the Hub at {endpoint}: {type(exc).__name__}: {exc}")
    return scrub(f"Publishing to {endpoint} failed: {type(exc).__name__}: {exc}")


def push(composition: Composition, folder: Path, repo_id: str) -> tuple[str, bool]:
    """Commit the export and tag it `v<version>`; (commit id, whether a tag was found)."""
    from huggingface_hub import HfApi

    api = HfApi(
        endpoint=settings.MOECOLLAB_HF_ENDPOINT,
        token=settings.MOECOLLAB_HF_TOKEN,
        library_name="moecollab-hub",
    )
    tag = f"v{composition.version}"
    api.create_repo(repo_id, exist_ok=True, private=settings.MOECOLLAB_HF_PRIVATE)
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id).tags}
    if tag in tags:  # an earlier attempt committed and tagged this version
        return tags[tag], True
    mixture = composition.mixture
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=f"{mixture.name}: composition {tag}",
        commit_description=(
            f"Composition {tag} of {mixture.slug}, {len(composition.expert_shas)} experts; "
            f"{mixture.kind_info.summary(composition.metrics or {})}. "
            "Published by MoECollab Hub"
            + (f" from {url}" if (url := public_url(composition.get_absolute_url())) else "")
        ),
        delete_patterns=["*"],  # files an older export had and this one has not
    )
    api.create_tag(repo_id, tag=tag, revision=info.oid, tag_message=info.commit_message or tag)
    return info.oid, False


def _record(composition: Composition, **fields) -> None:
    Composition.objects.filter(pk=composition.pk).update(**fields)


def publish(job_id: int, *, sleep=time.sleep) -> Composition | None:
    """Export and publish the job's composition (a Celery task body)."""
    return run(
        job_id,
        lambda job: _publish(job, sleep),
        what="publishing",
        soft_limit=settings.MOECOLLAB_PUBLISH_SOFT_LIMIT,
    )


def _publish(job: Job, sleep) -> Composition | None:
    from huggingface_hub import constants

    composition = job_composition(job)
    if composition.hub_status == Composition.Publish.PUBLISHED and composition.hub_commit:
        end_job(job, Job.Status.SUCCEEDED, f"already published as {composition.hub_commit[:12]}")
        return composition
    repo_id = repo_id_for(composition.mixture)
    try:
        refusal = publish_refusal(composition.mixture)
        if refusal:
            raise PublishError(refusal)
        if constants.is_offline_mode():
            raise PublishError("HF_HUB_OFFLINE is set in the worker's environment; unset it")
        fmt = default_format(composition)
        progress(job, 10, f"writing the {fmt.name} export")
        folder = ensure_export(composition, fmt=fmt)
        commit, found = _push_with_retries(job, composition, folder, repo_id, sleep)
    except Exception as exc:
        plain = isinstance(exc, PublishError | ExportError)
        message = str(exc) if plain else explain(exc)
        log.warning("publishing %s failed: %s", composition, message)
        with transaction.atomic():
            _record(composition, hub_status=Composition.Publish.FAILED, hub_error=message)
            end_job(job, Job.Status.FAILED, message[:300], message)
        return None
    url = f"{settings.MOECOLLAB_HF_ENDPOINT}/{repo_id}/tree/v{composition.version}"
    with transaction.atomic():
        _record(
            composition,
            hub_status=Composition.Publish.PUBLISHED,
            hub_repo=repo_id,
            hub_commit=commit,
            hub_url=url,
            hub_error="",
        )
        note = " (found tagged by an earlier attempt)" if found else ""
        end_job(job, Job.Status.SUCCEEDED, f"published to {repo_id} as {commit[:12]}{note}")
    return Composition.objects.get(pk=composition.pk)


def _push_with_retries(job, composition, folder, repo_id, sleep):
    tries = max(1, settings.MOECOLLAB_PUBLISH_TRIES)
    delay = settings.MOECOLLAB_PUBLISH_BACKOFF_SECONDS
    for attempt in range(1, tries + 1):
        progress(job, 40, f"uploading to {repo_id} (try {attempt} of {tries})")
        try:
            return push(composition, folder, repo_id)
        except PublishError:
            raise
        except Exception as exc:
            if not is_transient(exc) or attempt == tries:
                raise
            message = f"{explain(exc)}; retrying in {delay:g} s (try {attempt + 1} of {tries})"
            log.warning("publishing %s: %s", composition, message)
            progress(job, 40, message)
            sleep(delay)
            delay = min(delay * 2, 300.0)
    raise AssertionError("unreachable")
