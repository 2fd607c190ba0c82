"""Where the hub keeps its files (expert uploads, domain data, compositions, exports),
chosen from the environment.

`MOECOLLAB_STORAGE=local` (the default) keeps them under MEDIA_ROOT on this machine's
disk. `MOECOLLAB_STORAGE=s3` keeps them in a bucket of any S3-compatible object store
(AWS S3, MinIO, SeaweedFS, Ceph, R2) through django-storages, so that web processes and
workers on different machines share nothing but the database, the broker and the bucket.
Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
a profile, an instance role); they are never written into a setting here.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_str

BACKENDS = ("local", "s3")


def default_storage() -> dict:
    """The STORAGES["default"] entry that the environment asks for."""
    backend = (env_str("MOECOLLAB_STORAGE", "local") or "local").strip().lower()
    if backend not in BACKENDS:
        raise ImproperlyConfigured(
            f"MOECOLLAB_STORAGE={backend!r} is not a storage this hub knows "
            f"(use {' or '.join(BACKENDS)})"
        )
    if backend == "local":
        # No location: it follows MEDIA_ROOT. No URL serves it: downloads go through
        # views that check who asks.
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    from boto3.s3.transfer import TransferConfig

    bucket = env_str("MOECOLLAB_S3_BUCKET", "")
    if not bucket:
        raise ImproperlyConfigured("MOECOLLAB_STORAGE=s3 needs MOECOLLAB_S3_BUCKET (the bucket)")
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            # '' is AWS itself; any other S3-compatible service by its address.
            "endpoint_url": env_str("MOECOLLAB_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("MOECOLLAB_S3_REGION", "") or None,
            "location": env_str("MOECOLLAB_S3_PREFIX", "").strip("/"),
            "addressing_style": env_str("MOECOLLAB_S3_ADDRESSING_STYLE", "path"),
            "signature_version": "s3v4",
            # Objects are private; a download is a pre-signed link the hub hands out
            # after it checked who asks, valid for this many seconds.
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": env_int("MOECOLLAB_S3_LINK_SECONDS", 300),
            "file_overwrite": True,  # the hub names every object itself, uniquely
            # A file read back larger than this goes to a temporary file, not memory.
            "max_memory_size": 8 * 1024 * 1024,
            "verify": env_bool("MOECOLLAB_S3_VERIFY_TLS", True),
            # A large file goes up in 8 MiB parts, two at a time: a web process holds
            # about 16 MiB of it in memory, whatever its size.
            "transfer_config": _transfer_config(TransferConfig),
        },
    }


def _transfer_config(cls):
    config = cls(
        multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, max_concurrency=2
    )
    # read from a file object, parts are held in memory until sent: at most two of them
    config.max_in_memory_upload_chunks = 2
    return config


def redirect_downloads() -> bool:
    """Whether a download is answered with a pre-signed link to the store (default, when
    the store's address is one the users reach) or streamed through the web process."""
    return env_bool("MOECOLLAB_S3_REDIRECT_DOWNLOADS", True)
