"""Accepting an expert upload: every check before anything is kept.

Browser and API uploads both call `accept_upload`. It checks, in order, the
user's quota and upload rate, the size cap, the header-only contract check of
the routing library; then it stores the file under a generated name, hashing it
as it is stored (the file is read once, besides its header), and creates the
`Expert` with its validation job in one transaction that locks the user's row
and checks the quota, the rate and duplicates by sha256 again, so that
concurrent uploads cannot pass them together. The job's message is sent once
that transaction commits; if the process dies in between, the job waits queued
and `queueing.recover_jobs` sends it. A failure raises `UploadError` with the
HTTP status and a message; nothing is left behind.

Duplicates say nothing of other people's pending uploads: a user is told of
their own identical file, and of an identical file that is accepted (public);
an identical file that someone else has pending is refused at validation only
if it is accepted first.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone

from routing.files import file_sha256
from routing.kinds import get_kind
from routing.safetensors_header import ContractError, parse_json

from ..models import Domain, Expert, Mixture
from .validation import enqueue_validation


class UploadError(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid", retry_after=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.retry_after = retry_after  # seconds, for 429


def too_large() -> UploadError:
    """The refusal of a body over the hub's cap, stopped while it streamed (form and API)."""
    cap = settings.MOECOLLAB_MAX_UPLOAD_BYTES
    return UploadError(
        413, f"the file is larger than this hub accepts (at most {cap:,} bytes)", "too_large"
    )


def stopped_body(request) -> UploadError | None:
    """The refusal of a request whose body the upload handler stopped at the hub's cap
    (`hub.uploads`); ask once the body is parsed. The form and the API both answer it."""
    return too_large() if getattr(request, "upload_too_large", False) else None


@dataclass
class UploadRequest:
    mixture: Mixture
    domain: Domain
    name: str
    description: str
    licence: str
    file: object  # a Django UploadedFile
    adapter_config: dict | None = None

    @classmethod
    def of(cls, mixture: Mixture, domain: Domain, data: dict) -> UploadRequest:
        """From the cleaned data of the upload form or the API's serializer."""
        return cls(
            mixture=mixture,
            domain=domain,
            name=data["name"],
            description=data.get("description", ""),
            licence=data["licence"],
            file=data["file"],
            adapter_config=data.get("adapter_config"),
        )


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
        data = parse_json(
            uploaded.read().decode("utf-8"), "bad_lora", "adapter_config.json is not valid JSON"
        )
    except UnicodeDecodeError as exc:
        raise ValueError(f"adapter_config.json is not valid JSON: {exc}") from None
    except ContractError as exc:
        raise ValueError(str(exc)) from None
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


def spooled_path(uploaded) -> tuple[str, bool]:
    """A path on disk for the upload; (path, whether we made a temporary copy)."""
    if hasattr(uploaded, "temporary_file_path"):
        return uploaded.temporary_file_path(), False
    fd, path = tempfile.mkstemp(suffix=".safetensors")
    with os.fdopen(fd, "wb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    return path, True


def _check_allowance(user, mixture) -> None:
    """The user's quota in the mixture and their upload rate; raises UploadError."""
    active = Expert.objects.filter(owner=user, mixture=mixture, status__in=ACTIVE).count()
    if active >= mixture.upload_quota:
        raise UploadError(
            403,
            f"upload quota reached: you have {active} experts in this mixture "
            f"(at most {mixture.upload_quota}); retire one to upload another",
            "quota",
        )
    per_hour = settings.MOECOLLAB_UPLOADS_PER_HOUR
    since = timezone.now() - timedelta(hours=1)
    recent = list(
        Expert.objects.filter(owner=user, created_at__gte=since)
        .order_by("created_at")
        .values_list("created_at", flat=True)[:per_hour]
    )
    if len(recent) >= per_hour:
        wait = max(1, int((recent[0] - since).total_seconds()) + 1)
        raise UploadError(
            429,
            f"upload rate reached: {per_hour} experts stored in the last hour; "
            f"try again in {wait} s",
            "rate",
            retry_after=wait,
        )


def _check_duplicate(user, mixture, sha256: str) -> None:
    mine = Expert.objects.filter(mixture=mixture, owner=user, sha256=sha256).first()
    if mine is not None:
        raise UploadError(
            409,
            f"you already uploaded this exact file to this mixture as {mine.name!r} "
            f"(expert #{mine.pk})",
            "duplicate",
        )
    public = Expert.objects.filter(
        mixture=mixture, sha256=sha256, status=Expert.Status.ACCEPTED
    ).first()
    if public is not None:
        raise UploadError(
            409,
            f"this exact file is already in the mixture as expert #{public.pk} ({public.name!r})",
            "duplicate",
        )


class HashingReader:
    """A file handed to the storage, hashed as the storage reads it. `sha256()` answers
    only when the reads covered the file in order from its start (a storage that reads
    it again from the start restarts the hash); otherwise None."""

    def __init__(self, f):
        self._f, self.name = f, f.name
        self._size = os.fstat(f.fileno()).st_size
        self._hash, self._done = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        at = self._f.tell()
        data = self._f.read(n)
        if at == 0:
            self._hash, self._done = hashlib.sha256(), 0
        if at == self._done:
            self._hash.update(data)
            self._done += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._f.closed

    def __getattr__(self, name):  # anything else (fileno, readinto) bypasses the hash
        return getattr(self._f, name)

    def sha256(self) -> str | None:
        return self._hash.hexdigest() if self._done == self._size else None


def store_hashed(field, path: str, filename: str = "expert.safetensors") -> str:
    """Store a file into a model's file field under a generated name (the row is not
    saved); its sha256, from the same read."""
    with open(path, "rb") as f:
        reader = HashingReader(f)
        field.save(filename, File(reader), save=False)
    return reader.sha256() or file_sha256(path)


def _check_anchor_unchanged(mixture: Mixture) -> None:
    """The mixture's anchor is the one the file was checked against (an anchor accepted
    meanwhile is refused once the mixture has experts; this closes the window between)."""
    now = Mixture.objects.filter(pk=mixture.pk).values_list("anchor_id", flat=True).first()
    if now != mixture.anchor_id:
        raise UploadError(
            409,
            "the mixture's anchor changed while the file was checked: download the new "
            "anchor, train on it and upload again",
            "wrong_anchor",
        )


def accept_upload(user, req: UploadRequest) -> Expert:
    """Check, store and record an upload, and queue its validation (see the module)."""
    mixture, domain = req.mixture, req.domain
    if domain.mixture_id != mixture.pk:
        raise UploadError(400, f"domain {domain.name!r} is not part of {mixture.slug!r}")
    _check_allowance(user, mixture)  # early, before reading the file; again under the lock
    if req.file.size > mixture.max_upload_bytes:
        raise UploadError(
            413,
            f"the file is {req.file.size:,} bytes; this mixture accepts at most "
            f"{mixture.max_upload_bytes:,}",
            "too_large",
        )
    path, temporary = spooled_path(req.file)
    try:
        try:
            header = get_kind(mixture.kind).check_expert(
                path,
                base=mixture.base_spec(),  # its anchor, if any, included
                labels=list(domain.labels),
                adapter_config=req.adapter_config,
                look_beside=False,
                routing=mixture.routing,
            )
        except ContractError as exc:
            raise UploadError(
                400, f"the file breaks the expert contract: {exc}", exc.code
            ) from None
        expert = Expert(
            owner=user,
            mixture=mixture,
            domain=domain,
            name=req.name,
            description=req.description,
            licence=req.licence,
            architecture=header.architecture,
            source=header.source,
            adapter_config=req.adapter_config,
            size=req.file.size,
            num_parameters=header.num_parameters,
            report={
                "header": {
                    "labels": header.labels,
                    "architecture": header.architecture,
                    "source": header.source,
                    # classification lora experts: what their classifier reads
                    **({"pooling": header.pooling} if hasattr(header, "pooling") else {}),
                    # LoRA experts: the modules they adapt (a per-token mixture takes the MLP's)
                    **(
                        {"target_modules": sorted(header.lora.target_modules)}
                        if getattr(header, "lora", None) is not None
                        else {}
                    ),  # fmt: skip
                }
            },
        )
        # Stored before the locked transaction, so the lock is never held during a copy;
        # removed again on any refusal below.
        expert.sha256 = store_hashed(expert.file, path)
        try:
            with transaction.atomic():
                get_user_model().objects.select_for_update().filter(pk=user.pk).first()
                _check_anchor_unchanged(mixture)
                _check_allowance(user, mixture)
                _check_duplicate(user, mixture, expert.sha256)
                expert.save()
                enqueue_validation(expert)
        except IntegrityError:  # a concurrent identical upload of this user's won the race
            expert.file.delete(save=False)
            raise UploadError(
                409, "you already uploaded this exact file to this mixture", "duplicate"
            ) from None
        except BaseException:
            expert.file.delete(save=False)
            raise
        return expert
    finally:
        if temporary:
            os.unlink(path)
