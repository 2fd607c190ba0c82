"""llama.cpp for bench/export_lm.py, built from the `llama-cpp-python` source distribution on
PyPI (never a binary) in its own virtual environment: the converter that ships with it
(`vendor/llama.cpp/convert_hf_to_gguf.py`, installed and run by routing.gguf exactly as the
hub's GGUF job runs it) writes the GGUF files, its bindings run them.

The first run builds it (about 15 minutes on 2 cores); later runs reuse DIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from routing.gguf import LLAMA_CPP_PYTHON, download_sdist, install_converter, write_gguf

VERSION = LLAMA_CPP_PYTHON
TYPES = ("f32", "f16", "q8_0")  # f32 is compared token for token; the others are reported
CMAKE_ARGS = " ".join(
    f"-D{flag}=OFF"
    for flag in (
        "LLAMA_BUILD_TESTS",
        "LLAMA_BUILD_EXAMPLES",
        "LLAMA_BUILD_TOOLS",
        "LLAMA_BUILD_SERVER",
    )  # fmt: skip
)

RUNNER = r"""
import json, sys, time
from llama_cpp import Llama

spec = json.load(open(sys.argv[1]))
out = {}
for name, path in spec["models"].items():
    llm = Llama(model_path=path, n_ctx=512, n_threads=spec["threads"], verbose=False)
    rows, seconds, made = [], 0.0, 0
    for ids in spec["prompts"]:
        got, started = [], time.perf_counter()
        for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            if token == llm.token_eos() or len(got) == spec["new_tokens"]:
                break
            got.append(int(token))
        seconds += time.perf_counter() - started
        made += len(got)
        rows.append(got)
    out[name] = {"ids": rows, "tokens_per_second": made / seconds}
    del llm
print("RESULT " + json.dumps(out))
"""


def run(cmd: list, **kw) -> str:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))[:200]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def ensure(folder: Path) -> Path:
    """The python of the environment in `folder` that has llama_cpp's bindings, built from
    the source distribution (the converter is the hub's own: routing.gguf)."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    python = folder / "venv" / "bin" / "python"
    sdist = download_sdist(folder)
    built = python.is_file() and not subprocess.run([python, "-c", "import llama_cpp"],
                                                    capture_output=True).returncode  # fmt: skip
    if not built:
        run([sys.executable, "-m", "venv", "--clear", folder / "venv"])
        print(f"building llama-cpp-python {VERSION} from its source distribution", flush=True)
        env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
        run([python, "-m", "pip", "install", "--no-binary", "llama-cpp-python", sdist], env=env)
    install_converter(sdist=sdist)  # where the hub's workers find it (./run install puts it)
    return python


def plain_folder(base, folder: Path) -> Path:
    """The base model's float32 weights as a transformers folder (a model loaded from a GGUF
    file does not save itself: it is marked quantised)."""
    import torch
    from transformers import AutoModelForCausalLM

    settings = base.model.config.to_dict()
    settings.pop("quantization_config", None)
    config = type(base.model.config).from_dict(settings)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(base.model.state_dict(), assign=True)
    model.tie_weights()
    model.save_pretrained(folder)
    base.tokenizer.save_pretrained(folder)
    return folder


def llama_cpp_checks(folder: Path, model, full: Path, work: Path, native: dict,
                     threads: int = 2) -> dict:  # fmt: skip
    """The composition's GGUF files against the hub's greedy tokens (`native`: the ids the
    exported transformers model generated, equal to the hub's), and tokens/s against the
    base model's own f32 GGUF in the same run."""
    from routing.kinds.causal_lm.base import CausalBase

    python = ensure(folder)
    # the hub's own conversion (what its GGUF job runs) for each type
    ggufs = {t: write_gguf(full, work / f"composition-{t}.gguf", t) for t in TYPES}
    plain = work / "base-hf"
    if not plain.is_dir():  # the base model alone, as transformers loads it from its package
        plain_folder(CausalBase(model.base.name), plain)
    ggufs["base f32"] = write_gguf(plain, work / "base-f32.gguf", "f32")
    wanted = native["greedy_ids"]
    ran = {}
    for name, path in ggufs.items():  # each in its own process: a crash is one figure
        spec = work / "llama-cpp-spec.json"
        spec.write_text(json.dumps({"models": {name: str(path)}, "prompts": native["prompt_ids"],
                                    "threads": threads,
                                    "new_tokens": max(map(len, wanted))}))  # fmt: skip
        done = subprocess.run([python, "-c", RUNNER, spec], capture_output=True, text=True)
        if done.returncode:
            ran[name] = {"failed": f"exit status {done.returncode} (-11 or 139: a segfault)"}
        else:
            ran[name] = json.loads(done.stdout.split("RESULT ", 1)[1])[name]
    result = {"gguf_type": "f32", "prompts": len(wanted), "llama_cpp_python": VERSION}
    for t in TYPES:
        key = f"tokens_equal_{t}" if t != "f32" else "tokens_equal"
        if "failed" in ran[t]:
            result[key] = ran[t]["failed"]
            continue
        result[key] = sum(a == b for a, b in zip(ran[t]["ids"], wanted, strict=True))
        result[f"tokens_per_second_{t}"] = ran[t]["tokens_per_second"]
    result["tokens_per_second_base_f32"] = ran["base f32"].get("tokens_per_second")
    if "tokens_per_second_f32" in result and result["tokens_per_second_base_f32"]:
        result["speed_vs_base_f32"] = (result["tokens_per_second_f32"]
                                       / result["tokens_per_second_base_f32"])  # fmt: skip
    result["gguf_mb"] = {t: p.stat().st_size / 1e6 for t, p in ggufs.items()}
    return result
