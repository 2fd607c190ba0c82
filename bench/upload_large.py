"""Large uploads: the web process's memory while it takes a 1 GiB expert and stores it in
an S3 bucket, and the request's header check for 1 MiB against 1 GiB.

It starts what production runs (gunicorn with DJANGO_DEBUG off, one worker, object
storage on a real SeaweedFS with credentials, the embedded SQLite), makes a mixture on a
wide stand-in base (its expert contract asks for LoRA tensors that add up to the size
wanted; no model is loaded), then POSTs a real 1 MiB and a real 1 GiB expert file to
`/api/experts/`, streamed from disk, while it samples the gunicorn worker's resident
memory every 20 ms.

    .venv/bin/python bench/upload_large.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Four layers' query and value LoRA pairs at rank r on a base of width H weigh 64·r·H
# bytes (float32). Both experts have the same tensors (so headers of the same length):
# 1 MiB at rank 1 on a 16384-wide base, 1 GiB at rank 256 on a 65536-wide one.
LAYERS = 4
SHAPES = {"small": (16384, 1), "wide": (65536, 256)}  # base: (width, rank)
LABELS = ["negative", "positive"]
SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from experts.models import BaseModel, Domain, Mixture
user = get_user_model().objects.create_user("bench", password="bench-password-1")
for slug, hidden in {widths!r}.items():
    base = BaseModel.objects.create(name=f"bench/{{slug}}-encoder", hidden_size=hidden,
                                    num_layers={layers}, intermediate_size=hidden)
    mixture = Mixture.objects.create(slug=slug, name=slug, base_model=base,
                                     max_upload_bytes=4 * 1024**3)
    Domain.objects.create(mixture=mixture, name="reviews", labels={labels!r})
print(Token.objects.create(user=user).key)
"""


def expert_file(path: Path, base: str, rank: int | None = None) -> Path:
    """A LoRA expert on a stand-in base (its values do not matter to the request's
    checks; a worker would judge them)."""
    import torch
    from torch import nn

    from routing.kinds.classification.experts import save_lora_expert

    hidden, full_rank = SHAPES[base]
    rank = rank or full_rank
    lora = {}
    for layer in range(LAYERS):
        for module in ("attention.self.query", "attention.self.value"):
            key = f"encoder.layer.{layer}.{module}"
            lora[f"{key}.lora_A.weight"] = torch.full((rank, hidden), 0.01)
            lora[f"{key}.lora_B.weight"] = torch.full((hidden, rank), 0.01)
    save_lora_expert(path, lora_tensors=lora, classifier=nn.Linear(hidden, len(LABELS)),
                     r=rank, alpha=2 * rank, target_modules=["query", "value"],
                     labels=LABELS, base_model=f"bench/{base}-encoder",
                     domain="reviews")  # fmt: skip
    return path


def post_streamed(port: int, token: str, path: Path, mixture: str) -> tuple[int, dict, float]:
    """POST the file as multipart/form-data, read from disk in 1 MiB pieces."""
    boundary = "----bench-boundary"
    fields = {"mixture": mixture, "domain": "reviews", "name": path.stem}
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    head += f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
    head += f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head.encode()) + path.stat().st_size + len(tail)

    def body():
        yield head.encode()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
        yield tail

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("POST", "/api/experts/", body=body(), headers={
        "Authorization": f"Token {token}", "Content-Length": str(length),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "X-Forwarded-Proto": "https"})  # fmt: skip
    response = conn.getresponse()
    answer = json.loads(response.read() or b"{}")
    return response.status, answer, time.perf_counter() - started


class Sampler(threading.Thread):
    """The peak resident memory of a process (and its children), sampled every 20 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.proc, self.peak, self.running = psutil.Process(pid), 0, True

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def run(self):
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.02)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def header_check_seconds(path: Path, base: str, repeats: int = 5) -> float:
    from routing.basemodels import BaseSpec
    from routing.kinds import get_kind

    hidden = SHAPES[base][0]
    base = BaseSpec(f"bench/{base}-encoder", hidden, LAYERS, hidden)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        get_kind("classification").check_expert(path, base=base, labels=LABELS,
                                                adapter_config=None, look_beside=False)  # fmt: skip
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024, help="at most 1024")
    args = parser.parse_args(argv)
    import psutil

    from devtools.seaweed import SeaweedS3, free_ports

    work = Path(tempfile.mkdtemp(prefix="moecollab-upload-bench-"))
    small = expert_file(work / "small.safetensors", "small")
    big = expert_file(work / "big.safetensors", "wide", max(1, args.size_mib // 4))
    print(f"expert files: {small.stat().st_size / 2**20:.1f} MiB and "
          f"{big.stat().st_size / 2**20:.1f} MiB")  # fmt: skip
    small_check = header_check_seconds(small, "small")
    big_check = header_check_seconds(big, "wide")
    print(f"header check: {small_check * 1000:.2f} ms (small), {big_check * 1000:.2f} ms (large)")

    with SeaweedS3(work / "s3") as s3:
        (port,) = free_ports(1)
        env = {**os.environ, **s3.hub_env(), "DJANGO_DEBUG": "0", "REDIS_URL": "",
               "DJANGO_SECRET_KEY": "bench-only-secret-" + "x" * 40, "DATABASE_URL": "",
               "MOECOLLAB_VAR_DIR": str(work / "var"), "WEB_BIND": f"127.0.0.1:{port}",
               "WEB_WORKERS": "1", "MOECOLLAB_MAX_UPLOAD_BYTES": str(4 * 1024**3),
               "MOECOLLAB_STATIC_ROOT": str(work / "static")}  # fmt: skip
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        widths = {name: hidden for name, (hidden, _) in SHAPES.items()}
        setup = SETUP.format(widths=widths, layers=LAYERS, labels=LABELS)
        made = subprocess.run([python, "manage.py", "shell", "-c", setup], cwd=ROOT, env=env,
                              check=True, capture_output=True, text=True)  # fmt: skip
        token = made.stdout.split()[-1]
        gunicorn = str(Path(python).with_name("gunicorn"))
        log = open(work / "gunicorn.log", "wb")
        args = [gunicorn, "hub.wsgi", "-c", "hub/gunicorn.conf.py"]
        server = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_port(port)
            worker = psutil.Process(server.pid).children()[0]
            sampler = Sampler(worker.pid)
            status, answer, _ = post_streamed(port, token, small, "small")  # warms the worker up
            assert status == 201, answer
            before = sampler.rss()
            sampler.start()
            status, answer, seconds = post_streamed(port, token, big, "wide")
            peak = sampler.stop()
            assert status == 201, answer
            stored = [k for k in s3.keys() if k.startswith("experts/")]
            sizes = [s3.client().head_object(Bucket=s3.bucket, Key=k)["ContentLength"]
                     for k in stored]  # fmt: skip
            assert big.stat().st_size in sizes, "the large expert is not in the bucket"
        finally:
            server.terminate()
            server.wait(30)
            log.close()
    mib = big.stat().st_size / 2**20
    print(f"upload of {mib:.0f} MiB to the bucket: {seconds:.1f} s ({mib / seconds:.0f} MiB/s)")
    print(f"web worker resident memory: {before / 2**20:.0f} MiB before, "
          f"peak {peak / 2**20:.0f} MiB during: +{(peak - before) / 2**20:.1f} MiB "
          f"(target < 64 MiB)")  # fmt: skip
    print(f"header check, large / small: {big_check / small_check:.2f}x")
    shutil.rmtree(work, ignore_errors=True)


def _wait_for_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"gunicorn did not listen on {port}")


if __name__ == "__main__":
    main()
