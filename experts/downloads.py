"""A stored file as a download, once a view has checked who asks.

From the local disk the web process streams it. From a bucket it answers with a
pre-signed link to the object, valid for MOECOLLAB_S3_LINK_SECONDS, so that no byte of a
large file passes through the web process; with MOECOLLAB_S3_REDIRECT_DOWNLOADS off (a
store the users cannot reach) it streams the object through instead.
"""

from __future__ import annotations

from django.conf import settings
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)

from .models import private_storage
from .services.blobs import local_copy, local_path


def stored_file_response(name: str, filename: str):
    storage = private_storage()
    if local_path(name) is None and settings.MOECOLLAB_REDIRECT_DOWNLOADS:
        disposition = f'attachment; filename="{filename}"'
        url = storage.url(name, parameters={"ResponseContentDisposition": disposition})
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "private, no-store"  # the link is for this request only
        return response
    try:
        handle = storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404(f"{filename} is missing from the storage") from None
    return FileResponse(handle, as_attachment=True, filename=filename)


def zip_response(entries: list, size: int, filename: str) -> StreamingHttpResponse:
    """A zip assembled from stored files while it downloads (services.archives), with the
    size measured when they were stored as its length."""
    from .services.archives import zip_chunks

    response = StreamingHttpResponse(zip_chunks(entries), content_type="application/zip")
    response["Content-Length"] = str(size)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


ANCHOR_FORMATS = ("safetensors", "peft")


def anchor_response(anchor, fmt: str = "safetensors"):
    """A mixture's anchor as stored (`safetensors`), or as a zipped PEFT adapter folder
    (`peft`: what the plain-PEFT recipe merges). Anyone may download an accepted anchor:
    every expert of the mixture builds on it."""
    from routing.kinds import get_kind

    if fmt not in ANCHOR_FORMATS:
        raise Http404(f"no format {fmt!r}: {' or '.join(ANCHOR_FORMATS)}")
    stem = f"{anchor.mixture.slug}-anchor-{anchor.sha256[:12]}"
    if fmt == "safetensors":
        return stored_file_response(anchor.file.name, f"{stem}.safetensors")
    body = get_kind(anchor.mixture.kind).anchor_peft_zip(
        local_copy(anchor.file, anchor.sha256),
        base_model=anchor.mixture.base_model.name,
        adapter_config=anchor.adapter_config,
    )
    response = HttpResponse(body, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{stem}-peft.zip"'
    return response
