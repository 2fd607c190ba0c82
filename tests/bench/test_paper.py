"""bench/paper.py --quick on a small subset: the tables and plots come out, and are sane."""

import json

import pytest

from bench.paper import main
from bench.paper_report import SYSTEM_ORDER

pytestmark = pytest.mark.minilm


def test_the_quick_benchmark_writes_sane_tables(tmp_path):
    out = tmp_path / "out"
    main(
        [
            "--quick",
            "--limit",
            "12",
            "--seeds",
            "1",
            "--timing-texts",
            "8",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert set(results["kinds"]) == {"head", "lora"}
    for kind in results["kinds"].values():
        assert len(kind["seeds"]) >= 1
        for seed in kind["seeds"]:
            assert list(seed["systems"]) and set(seed["systems"]) == set(SYSTEM_ORDER)
            for name, system in seed["systems"].items():
                assert 0.0 <= system["overall"]["accuracy"] <= 1.0, name
                assert set(system["domains"]) == {"bbc", "reuters8", "20news", "rotten"}
                if "utilisation" in system:
                    load = system["utilisation"]["load"]
                    assert len(load) == 4 and abs(sum(load) - 1) < 1e-4
                    assert 0.0 <= system["utilisation"]["entropy"] <= 1.0 + 1e-6
            assert seed["flops"]["gate-top1"] <= seed["flops"]["gate-dense"]
        timing = kind["seeds"][0]["time_per_example"]
        assert all(t > 0 for t in timing.values())
    # lora experts run whole adapted passes: top-1 must cost less than dense
    lora = results["kinds"]["lora"]["seeds"][0]["flops"]
    assert lora["gate-top1"] < 0.6 * lora["gate-dense"]

    report = (out / "results.md").read_text()
    for name in SYSTEM_ORDER:
        assert f"| {name} |" in report
    assert "python bench/paper.py --quick --limit 12" in report
    for kind in ("head", "lora"):
        for plot in (f"routing-matrix-{kind}.png", f"utilisation-{kind}.png"):
            data = (out / "img" / plot).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
            assert f"(img/{plot})" in report
