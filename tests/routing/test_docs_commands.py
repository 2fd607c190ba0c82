"""The documentation's shell samples: every `python -m routing` command in the README
and docs/ is one the CLI accepts, and the README's walk-through runs as shown."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from routing.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Commands of the walk-through that need a running hub and one of its downloads; the hub
# tests run them against a test hub (tests/hub/test_cli_against_hub.py).
NEEDS_A_HUB = ("--hub", ".zip")


def shell_blocks(path: Path) -> list[str]:
    return re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(), flags=re.S)


def cli_commands(block: str) -> list[list[str]]:
    """The `python -m routing ...` commands of a shell block, as argument lists."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        if "-m routing" not in line:
            continue
        words = shlex.split(line, comments=True)
        for i in range(len(words) - 2):
            if words[i].endswith("python") and words[i + 1 : i + 3] == ["-m", "routing"]:
                out.append(words[i + 3 :])
                break
    return out


DOCUMENTED = [
    pytest.param(args, id=f"{path.name}: {' '.join(args)[:60]}")
    for path in DOCS
    for block in shell_blocks(path)
    for args in cli_commands(block)
]


def test_the_docs_show_cli_commands():
    assert len(DOCUMENTED) >= 10


@pytest.mark.parametrize("args", DOCUMENTED)
def test_every_documented_cli_command_is_one_the_cli_accepts(args):
    build_parser().parse_args(args)  # exits (a test failure) on an unknown flag or command


@pytest.mark.minilm
def test_the_readme_walkthrough_runs_as_shown(tmp_path, monkeypatch, capsys):
    """Each line as a user types it: the first in a shell with the environment's
    `python`, the others through the same command line in this process (what
    `python -m routing` runs, without starting an interpreter and torch for each)."""
    (block,) = [b for b in shell_blocks(ROOT / "README.md") if "routing compose" in b]
    lines = [line for line in block.splitlines() if line.strip()]
    assert any(hub in line for line in lines for hub in NEEDS_A_HUB)
    runnable = [line for line in lines if not any(hub in line for hub in NEEDS_A_HUB)]
    bin_dir = Path(sys.executable).parent  # `python` is the environment's, as once activated
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "MOECOLLAB_CACHE": str(tmp_path / "cache"),
    }
    first = subprocess.run(
        runnable[0], shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert first.returncode == 0, f"{runnable[0]}\n{first.stderr[-2000:]}"
    outputs = [first.stdout]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MOECOLLAB_CACHE", env["MOECOLLAB_CACHE"])
    for line in runnable[1:]:
        words = shlex.split(line, comments=True)
        assert words[:3] == ["python", "-m", "routing"], line
        code = main(words[3:])
        said = capsys.readouterr()
        assert code == 0, f"{line}\n{said.err[-2000:]}"
        outputs.append(said.out)
    by_command = dict(zip(runnable, outputs, strict=True))
    predicted = [out for line, out in by_command.items() if "routing predict" in line]
    assert predicted and predicted[0].split("\t")[0] in ("fresh", "rotten")
    assert (tmp_path / "my-mixture-hf" / "config.json").is_file()
