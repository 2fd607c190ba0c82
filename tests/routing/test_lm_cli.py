"""The language-model command line, end to end on a tiny base model and text files."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import json
import os
import re
import subprocess
import sys

from devtools.tiny_lm import lm_texts
from routing.cli import main
from routing.files import file_sha256
from tests.routing.lm_fixtures import MAX_TOKENS, PREFIX, tiny_lm_folder  # noqa: F401

ALL = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def test_train_check_compose_evaluate_generate_export(tmp_path, tiny_lm_folder, capsys):
    common = ["--base", tiny_lm_folder, "--device", "cpu", "--cache", str(tmp_path / "cache"),
              "--max-tokens", str(MAX_TOKENS), "--prefix-tokens", str(PREFIX)]  # fmt: skip
    weather = tmp_path / "weather.txt"
    weather.write_text("\n\n".join(lm_texts("weather", 300, words=60)))
    food = tmp_path / "food.jsonl"
    food.write_text("\n".join(json.dumps({"text": t}) for t in lm_texts("food", 300, words=60)))
    for corpus in (weather, food):
        out = tmp_path / f"{corpus.stem}.safetensors"
        argv = ["lm", "train", "--corpus", str(corpus), "--out", str(out), "--epochs", "3",
                "--batch-size", "16", "--lr", "1e-2", "--rank", "4", *common]  # fmt: skip
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "training on 200 of the 300 texts" in out and "held-out perplexity" in out

    assert main(["lm", "check", str(tmp_path / "weather.safetensors"), *common]) == 0
    assert "OK: language-model expert (moecollab format)" in capsys.readouterr().out

    experts = [
        f"{tmp_path / 'weather.safetensors'}={weather}",
        f"{tmp_path / 'food.safetensors'}={food}",
    ]
    mix = tmp_path / "mix"
    assert main(["lm", "compose", *experts, "--out", str(mix), "--gate-hidden", "16", *common]) == 0
    out = capsys.readouterr().out
    assert "routing matrix" in out and "routing accuracy" in out

    assert main(["lm", "evaluate", str(mix), "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["domains"]) == {"weather", "food"}
    for m in report["domains"].values():
        assert m["perplexity"] < m["base_perplexity"]

    assert main(["lm", "generate", str(mix), "rain storm wet cloud", "--max-new-tokens", "4",
                 *common]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    assert line.startswith("[weather 1.00] rain storm wet cloud")

    hf = tmp_path / "mix-hf"
    assert main(["lm", "export", str(mix), "--out", str(hf), "--repo-id", "me/mix"]) == 0
    snippet = capsys.readouterr().out.split("it runs in three lines:", 1)[1]
    ran = runs_quietly(snippet, tmp_path)
    assert ran.stdout.startswith("The government announced")


NOT_OURS = re.compile(r"^Loading weights: .*$", re.M)  # transformers' own progress bar


def runs_quietly(code: str, cwd) -> subprocess.CompletedProcess:
    """Run a loading snippet as a user would (a fresh interpreter, no terminal) and check
    that it printed nothing a user reads as an error: no question about custom code, no
    warning about the model's type, no warning at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTEST"))}
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    said = NOT_OURS.sub("", ran.stderr.replace("\r", "\n")).strip()
    assert said == "", said[-3000:]
    return ran


def test_a_bad_corpus_is_a_clear_error(tmp_path, tiny_lm_folder, capsys):
    bad = tmp_path / "notes.csv"
    bad.write_text("text\nhello\n")
    argv = ["lm", "train", "--corpus", str(bad), "--out", str(tmp_path / "x.safetensors"),
            "--base", tiny_lm_folder]  # fmt: skip
    assert main(argv) == 1
    assert "a text domain is a .txt or a .jsonl file" in capsys.readouterr().err


def test_an_anchored_mixture_from_the_command_line(tmp_path, tiny_lm_folder, capsys):
    """Train an anchor on public text, two experts on it (one coordinated, one alone), a
    multitask LoRA on everything, compose per token and per sequence, compare, generate."""
    common = ["--base", tiny_lm_folder, "--device", "cpu", "--cache", str(tmp_path / "cache"),
              "--max-tokens", str(MAX_TOKENS), "--prefix-tokens", str(PREFIX)]  # fmt: skip
    fast = ["--epochs", "2", "--batch-size", "16", "--lr", "1e-2", "--rank", "4"]
    corpora = {}
    for name, seed in (("weather", 0), ("food", 0), ("public", 7)):
        mixed = [*lm_texts("weather", 150, words=60, seed=seed),
                 *lm_texts("food", 150, words=60, seed=seed)]  # fmt: skip
        texts = lm_texts(name, 300, words=60) if name != "public" else mixed
        corpora[name] = tmp_path / f"{name}.txt"
        corpora[name].write_text("\n\n".join(texts))
    anchor = tmp_path / "anchor.safetensors"
    assert main(["lm", "anchor", "--corpus", str(corpora["public"]), "--out", str(anchor),
                 *fast, *common]) == 0  # fmt: skip
    assert "an anchor on the base;" in capsys.readouterr().out
    anchored = [*common, "--anchor", str(anchor)]
    for name, how in (("weather", ["--coordinated"]), ("food", [])):
        argv = ["lm", "train", "--corpus", str(corpora[name]), "--out",
                str(tmp_path / f"{name}.safetensors"), *how, *fast, *anchored]  # fmt: skip
        assert main(argv) == 0
    said = capsys.readouterr().out
    assert "an expert beside the shared expert on the base with the anchor" in said
    assert "an expert alone on the base with the anchor" in said
    assert main(["lm", "check", str(tmp_path / "food.safetensors"), *anchored]) == 0
    assert f"anchor {file_sha256(anchor)[:12]}" in capsys.readouterr().out
    assert main(["lm", "check", str(tmp_path / "food.safetensors"), *common]) == 1
    assert "wrong_anchor" in capsys.readouterr().err
    multitask = tmp_path / "multitask.safetensors"
    everything = ",".join(str(corpora[n]) for n in ("public", "weather", "food"))
    assert main(["lm", "train", "--corpus", everything, "--out", str(multitask),
                 "--target-modules", ALL, *fast, *common]) == 0  # fmt: skip
    capsys.readouterr()
    experts = [f"{tmp_path / n}.safetensors={corpora[n]}" for n in ("weather", "food")]
    for granularity in ("token", "sequence"):
        out = tmp_path / granularity
        assert (
            main(
                [
                    "lm",
                    "compose",
                    *experts,
                    "--out",
                    str(out),
                    "--granularity",
                    granularity,
                    "--against",
                    str(multitask),
                    "--gate-hidden",
                    "16",
                    *anchored,
                ]
            )
            == 0
        )
        said = capsys.readouterr().out
        assert "the composition is lower on" in said and "multitask.safetensors" in said
    assert "per token, top-2 of the shared expert and 2 experts" not in said  # the last: sequence
    assert main(["lm", "evaluate", str(tmp_path / "token"), "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["granularity"] == "token" and set(report["domains"]) == {"weather", "food"}
    assert main(["lm", "generate", str(tmp_path / "token"), "rain storm wet cloud",
                 "--max-new-tokens", "3", *common]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("[") and lines[1].startswith("  tokens: ")
    assert len(lines[1].split()) == 4  # "tokens:" and one expert per generated token
