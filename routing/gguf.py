"""GGUF files for llama.cpp, written by llama.cpp's own converter (`convert_hf_to_gguf.py`)
from a composition's full export (a standard Mixtral checkpoint).

The converter is not on PyPI as a package: it ships inside the `llama-cpp-python` source
distribution, with the `gguf-py` it imports. `python -m routing.gguf install` (run by
`./run install`) downloads that source distribution from the package index and keeps only
the converter (about 2 MB) in `converter_folder()`; nothing is compiled and no binary is
downloaded. The conversion runs in a subprocess of this Python (it needs torch,
transformers, numpy and sentencepiece, all pinned in requirements.txt).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

LLAMA_CPP_PYTHON = "0.3.36"  # the llama.cpp its source distribution carries converts
SCRIPT = "convert_hf_to_gguf.py"
# What the converter needs of the llama.cpp tree (its license travels with it).
KEEP = (SCRIPT, "conversion/", "gguf-py/", "LICENSE")
TYPES = ("f16", "f32", "bf16", "q8_0")  # what the converter writes (the hub offers f16)
DEFAULT_TYPE = "f16"


class GGUFError(Exception):
    """A GGUF file that could not be written; the message says why."""


def converter_folder() -> Path:
    """Where the converter lies: `MOECOLLAB_GGUF_CONVERTER`, else inside this Python's
    environment (`<prefix>/share/llama.cpp-<version>`)."""
    configured = os.environ.get("MOECOLLAB_GGUF_CONVERTER")
    if configured:
        return Path(configured)
    return Path(sys.prefix) / "share" / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def converter_missing(folder: Path | None = None) -> str | None:
    """Why no GGUF file can be written here (None: the converter is installed)."""
    folder = folder or converter_folder()
    if (folder / SCRIPT).is_file() and (folder / "gguf-py").is_dir():
        return None
    return (f"llama.cpp's converter is not installed on this hub (expected in {folder.name}/; "
            "`python -m routing.gguf install` installs it)")  # fmt: skip


def install_converter(folder: Path | None = None, *, sdist: Path | None = None) -> Path:
    """Put llama.cpp's converter in `folder` from the `llama-cpp-python` source
    distribution (`sdist`, else downloaded from the package index); nothing is done when
    it is there already. The folder appears whole or not at all."""
    folder = folder or converter_folder()
    if converter_missing(folder) is None:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".llama.cpp-") as work:
        work = Path(work)
        sdist = sdist or download_sdist(work)
        top = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
        with tarfile.open(sdist) as archive:
            members = []
            for member in archive.getmembers():
                inner = member.name.removeprefix(top)
                if member.name.startswith(top) and inner.startswith(KEEP):
                    member.name = inner
                    members.append(member)
            if not any(m.name == SCRIPT for m in members):
                raise GGUFError(f"{sdist.name} carries no vendor/llama.cpp/{SCRIPT}")
            archive.extractall(work / "converter", members=members, filter="data")
        if folder.exists():  # a half-made folder of an earlier, killed install
            shutil.rmtree(folder)
        (work / "converter").rename(folder)
    return folder


def download_sdist(folder: Path) -> Path:
    """The `llama-cpp-python` source distribution, downloaded from the package index into
    `folder` (kept there: a second call finds it)."""
    found = folder / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not found.is_file():
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
              "--no-binary", "llama-cpp-python", f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
              "--dest", folder])  # fmt: skip
    return found


def write_gguf(model_folder: Path, out: Path, outtype: str = DEFAULT_TYPE, *,
               timeout: float | None = None) -> Path:  # fmt: skip
    """The transformers checkpoint in `model_folder` as a GGUF file `out` (`outtype`: one
    of TYPES), written by llama.cpp's converter."""
    if outtype not in TYPES:
        raise GGUFError(f"unknown GGUF type {outtype!r}: {' or '.join(TYPES)}")
    folder = converter_folder()
    missing = converter_missing(folder)
    if missing:
        raise GGUFError(missing)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, str(folder / SCRIPT), str(model_folder), "--outfile", str(out),
             "--outtype", outtype],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise GGUFError(f"llama.cpp's converter took longer than {timeout:.0f} s") from None
    if done.returncode != 0 or not out.is_file():
        last = [line for line in done.stderr.splitlines() if line.strip()][-3:]
        raise GGUFError(f"llama.cpp's converter failed (exit status {done.returncode}): "
                        + " / ".join(last))  # fmt: skip
    return out


def _run(cmd: list) -> None:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if done.returncode != 0:
        raise GGUFError(f"{' '.join(map(str, cmd[:6]))} failed: {done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m routing.gguf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="install llama.cpp's converter")
    install.add_argument("--sdist", type=Path, help="a llama-cpp-python source distribution")
    convert = sub.add_parser("convert", help="a transformers folder as a GGUF file")
    convert.add_argument("folder", type=Path)
    convert.add_argument("out", type=Path)
    convert.add_argument("--type", choices=TYPES, default=DEFAULT_TYPE)
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(f"llama.cpp's converter: {install_converter(sdist=args.sdist)}")
        else:
            print(write_gguf(args.folder, args.out, args.type))
    except GGUFError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
