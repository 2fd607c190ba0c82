"""Accepting an expert upload: every check before anything is kept.

Browser and API uploads both call `accept_upload`. It checks, in order, the
user's quota, the size cap, the header-only contract check of the routing
library and duplicates by sha256; then it stores the file under a generated
name and creates the `Expert` in one transaction, and enqueues validation
after that transaction commits. A failure raises `UploadError` with the HTTP
status and a message; nothing is left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

from django.core.files import File
from django.db import IntegrityError, transaction

from routing.contract import check_expert_file
from routing.experts import file_sha256
from routing.safetensors_header import ContractError

from ..models import Domain, Expert, Mixture


class UploadError(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass
class UploadRequest:
    mixture: Mixture
    domain: Domain
    name: str
    description: str
    licence: str
    file: object  # a Django UploadedFile
    adapter_config: dict | None = None


ACTIVE = [
    Expert.Status.UPLOADED,
    Expert.Status.VALIDATING,
    Expert.Status.ACCEPTED,
    Expert.Status.FAILED,
]


MAX_ADAPTER_CONFIG_BYTES = 64 * 1024


def parse_adapter_config(uploaded) -> dict:
    """A PEFT adapter_config.json upload as a dict, or a ValueError saying what is wrong."""
    if uploaded.size > MAX_ADAPTER_CONFIG_BYTES:
        raise ValueError("adapter_config.json is larger than 64 KiB")
    try:
        data = json.loads(uploaded.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"adapter_config.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("adapter_config.json must hold a JSON object")
    return data


class LocalFile:
    """A file already on disk, shaped like the upload `accept_upload` receives (for
    uploads made on the server itself: the demo seeder, scripts, tests)."""

    def __init__(self, path):
        self.path, self.size = str(path), os.path.getsize(path)

    def temporary_file_path(self) -> str:
        return self.path


def _spooled_path(uploaded) -> tuple[str, bool]:
    """A path on disk for the upload; (path, whether we made a temporary copy)."""
    if hasattr(uploaded, "temporary_file_path"):
        return uploaded.temporary_file_path(), False
    fd, path = tempfile.mkstemp(suffix=".safetensors")
    with os.fdopen(fd, "wb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    return path, True


def accept_upload(user, req: UploadRequest, *, enqueue=None) -> Expert:
    mixture, domain = req.mixture, req.domain
    if domain.mixture_id != mixture.pk:
        raise UploadError(400, f"domain {domain.name!r} is not part of {mixture.slug!r}")
    active = Expert.objects.filter(owner=user, mixture=mixture, status__in=ACTIVE).count()
    if active >= mixture.upload_quota:
        raise UploadError(
            403,
            f"upload quota reached: you have {active} experts in this mixture "
            f"(at most {mixture.upload_quota}); retire one to upload another",
            "quota",
        )
    if req.file.size > mixture.max_upload_bytes:
        raise UploadError(
            413,
            f"the file is {req.file.size:,} bytes; this mixture accepts at most "
            f"{mixture.max_upload_bytes:,}",
            "too_large",
        )
    path, temporary = _spooled_path(req.file)
    try:
        try:
            header = check_expert_file(
                path,
                base=mixture.base_model.spec(),
                labels=list(domain.labels),
                adapter_config=req.adapter_config,
                look_beside=False,
            )
        except ContractError as exc:
            raise UploadError(
                400, f"the file breaks the expert contract: {exc}", exc.code
            ) from None
        sha256 = file_sha256(path)
        if Expert.objects.filter(mixture=mixture, sha256=sha256).exists():
            raise UploadError(
                409, "this exact file was already uploaded to this mixture", "duplicate"
            )
        try:
            with transaction.atomic():
                expert = Expert(
                    owner=user,
                    mixture=mixture,
                    domain=domain,
                    name=req.name,
                    description=req.description,
                    licence=req.licence,
                    kind=header.kind,
                    source=header.source,
                    adapter_config=req.adapter_config,
                    sha256=sha256,
                    size=req.file.size,
                    num_parameters=header.num_parameters,
                    report={
                        "header": {
                            "labels": header.labels,
                            "kind": header.kind,
                            "source": header.source,
                        }
                    },
                )
                with open(path, "rb") as f:
                    expert.file.save("expert.safetensors", File(f), save=False)
                try:
                    expert.save()
                except Exception:
                    expert.file.delete(save=False)
                    raise
                if enqueue is not None:
                    transaction.on_commit(lambda: enqueue(expert))
        except IntegrityError:  # a concurrent identical upload won the race
            raise UploadError(
                409, "this exact file was already uploaded to this mixture", "duplicate"
            ) from None
        return expert
    finally:
        if temporary:
            os.unlink(path)
