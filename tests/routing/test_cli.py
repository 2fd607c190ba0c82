"""The command line, end to end on a tiny base model and CSV files."""

import csv
import json

from devtools.tiny import synthetic_rows
from routing.cli import main


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def test_train_check_compose_evaluate_predict(tmp_path, tiny_base, capsys):
    common = ["--base", tiny_base, "--device", "cpu", "--cache", str(tmp_path / "cache")]
    weather = write_csv(tmp_path / "weather.csv", synthetic_rows("weather", 600))
    food = write_csv(tmp_path / "food.csv", synthetic_rows("food", 600))
    for data in (weather, food):
        out = tmp_path / f"{data.stem}.safetensors"
        assert (
            main(["train", "--dataset", str(data), "--out", str(out), "--epochs", "40", *common])
            == 0
        )
    assert "held-out accuracy" in capsys.readouterr().out

    assert main(["check", str(tmp_path / "weather.safetensors"), *common]) == 0
    out = capsys.readouterr().out
    assert "OK: head expert" in out and "rainy, sunny" in out

    experts = [
        f"{tmp_path / 'weather.safetensors'}={weather}",
        f"{tmp_path / 'food.safetensors'}={food}",
    ]
    assert main(["compose", *experts, "--out", str(tmp_path / "mix"), "--top-k", "1", *common]) == 0
    out = capsys.readouterr().out
    assert "routing matrix" in out and "normalised load entropy" in out
    assert "weather" in out and "food" in out

    assert main(["evaluate", str(tmp_path / "mix"), "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["domains"]) == {"weather", "food"}
    assert report["overall"]["accuracy"] > 0.8
    config = json.loads((tmp_path / "mix" / "config.json").read_text())
    assert (config["gate_features"], config["gate_reads_experts"]) == ("mean-cls-middle", True)
    plain = ["--gate-features", "mean", "--no-read-experts", "--no-calibrate"]
    assert main(["compose", *experts, "--out", str(tmp_path / "plain"), *plain, *common]) == 0
    capsys.readouterr()
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert (config["gate_features"], config["gate_reads_experts"]) == ("mean", False)
    assert config["temperatures"] == [1.0, 1.0] and config["info"]["train"]["balance_domains"]

    assert main(["predict", str(tmp_path / "mix"), "lemon vinegar lime sour tart", *common]) == 0
    assert capsys.readouterr().out.split("\t")[0] == "sour"
    expert = str(tmp_path / "weather.safetensors")
    assert main(["predict", expert, "rain storm wet cloud umbrella flood", *common]) == 0
    label, score, domain, _ = capsys.readouterr().out.split("\t")
    assert (label, domain) == ("rainy", "weather") and float(score) > 0.5

    hf = tmp_path / "mix-hf"
    assert main(["export", str(tmp_path / "mix"), "--out", str(hf), "--repo-id", "me/mix"]) == 0
    assert "trust_remote_code=True" in capsys.readouterr().out
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(hf), trust_remote_code=True)
    assert classify("lemon vinegar lime sour tart")[0]["label"] == "sour"
    assert 'model="me/mix"' in (hf / "README.md").read_text()


def test_check_reports_a_rejection_and_exits_non_zero(tmp_path, tiny_base, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    assert main(["check", str(bad), "--base", tiny_base]) == 1
    assert "REJECTED (not_safetensors)" in capsys.readouterr().err


def test_a_missing_dataset_is_a_clear_error(tmp_path, tiny_base, capsys):
    code = main(
        [
            "train",
            "--dataset",
            "nope.csv",
            "--out",
            str(tmp_path / "x.safetensors"),
            "--base",
            tiny_base,
        ]
    )
    assert code == 1
    assert "unknown dataset 'nope.csv'" in capsys.readouterr().err


def test_train_says_how_much_of_the_file_it_uses_and_can_use_all(tmp_path, tiny_base, capsys):
    common = ["--base", tiny_base, "--device", "cpu", "--cache", str(tmp_path / "cache")]
    weather = write_csv(tmp_path / "weather.csv", synthetic_rows("weather", 400))
    out = str(tmp_path / "w.safetensors")
    assert main(["train", "--dataset", str(weather), "--out", out, "--epochs", "2", *common]) == 0
    said = capsys.readouterr().out
    used = int(said.split("training on ")[1].split(" ")[0])
    assert f"of the 400 examples of {weather}" in said and "--all-data" in said
    assert 0.6 * 400 < used < 0.8 * 400 and "held-out accuracy" in said
    args = ["train", "--dataset", str(weather), "--out", out, "--epochs", "2", "--all-data"]
    assert main([*args, *common]) == 0
    said = capsys.readouterr().out
    assert "training on 400 of the 400 examples" in said
    assert "accuracy on trained-on texts" in said and "trained on 400 examples" in said
