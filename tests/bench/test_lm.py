"""bench/lm.py --quick on a tiny subset of the real corpora, on a tiny random Llama (the
benchmark's own figures on SmolLM2 are in docs/results-lm.md): the tables, the targets
and the plots come out, and are sane."""

# ruff: noqa: F811 -- the shared fixture is imported to be used here

import json

from bench.lm import main
from tests.routing.lm_fixtures import lm_domains, tiny_lm_folder  # noqa: F401 (fixtures)


def test_the_quick_language_model_benchmark_writes_sane_tables(tmp_path, tiny_lm_folder):
    out = tmp_path / "out"
    argv = ["--quick", "--limit", "2", "--repeats", "1", "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--base", tiny_lm_folder]  # fmt: skip
    main(argv)
    results = json.loads((out / "results-lm.json").read_text())
    summary = results["summary"]
    for system in ("base model", "multitask LoRA (same budget)", "oracle routing",
                   "uniform ensemble", "uniform merge", "centroid router top-1",
                   "prefix-likelihood router top-1", "learned top-1", "learned top-2 mixed",
                   "learned top-2 merged", "ablation: no entropy terms"):  # fmt: skip
        assert system in summary, system
        mean, _ = summary[system]["overall"]
        assert 1.0 < mean < 1000.0, system
        assert set(summary[system]["domains"]) == {"bbc", "rotten", "20news", "python"}
    routed = summary["oracle routing"]["routing_accuracy"][0]
    assert routed == 1.0
    # the oracle and the experts it routes to are the same numbers, by construction
    (size,) = results["sizes"]
    seed = results["sizes"][size]["per_seed"][0]["systems"]
    assert seed["oracle routing"]["utilisation"]["entropy"] > 0.9  # four domains, one each
    timing = results["timing"]
    assert all(t["prefill"] > 0 and t["generate"] > 0 for t in timing.values())
    assert results["flops"]["learned top-2 mixed"] > results["flops"]["learned top-1"]
    # the anchored systems: per token (named so), the fair single model, their costs
    for system in ("anchor alone", "anchored experts, oracle", "anchored experts, learned top-1",
                   "anchored experts, token top-1", "anchored experts, token top-2 tuned",
                   "coordinated experts, oracle", "coordinated experts, token top-2",
                   "fair multitask LoRA"):  # fmt: skip
        assert 1.0 < summary[system]["overall"][0] < 1000.0, system
    assert results["token_timing"]["token top-2"]["generate"] > 0
    assert results["token_flops"]["token top-2"] > results["token_flops"]["token top-1"]
    assert results["add_expert"]["experts"] == 8 and results["add_expert"]["rows_new"] == 1
    assert results["fair_multitask"]["lr"] in (5e-4, 1e-3, 2e-3)
    assert len(results["layer_routing"]["by_layer"]) == 4  # domains, each (layers, experts)
    assert results["gate_seconds"] > 0 and len(results["targets"]) == 11
    report = (out / "results-lm.md").read_text()
    assert "python bench/lm.py --quick --limit 2 --repeats 1 --base" in report
    assert "| learned top-1 |" in report and "## Targets" in report
    assert "Does the mixture beat the single model?" in report
    for plot in ("lm-perplexity.png", "lm-routing-matrix.png", "lm-token-routing.png"):
        data = (out / "img" / plot).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"(img/{plot})" in report


def test_a_diverged_single_model_is_no_baseline_and_no_claim_is_made_on_it():
    from bench.lm_merge import claim_size, diverged

    def row(overall, seeds=1):
        domains = {d: [overall, 0.0] for d in ("bbc", "rotten", "20news", "python")}
        return {"overall": [overall, 0.0], "seeds": seeds, "domains": domains}

    sound = {"anchor alone": row(37.0, 3), "fair multitask LoRA": row(33.6, 3),
             "anchored experts, learned top-1": row(29.9, 3)}  # fmt: skip
    broken = {"anchor alone": row(36.8), "fair multitask LoRA": row(2548.0),
              "anchored experts, learned top-1": row(28.6)}  # fmt: skip
    assert diverged(sound) is None and diverged(broken) == "anchor alone"
    sizes = {64: {"summary": sound, "seeds": [0]}, 256: {"summary": broken, "seeds": [1]}}
    assert claim_size(sizes) == 64  # the size with a sound baseline, though 256 "wins" more
    sizes[64]["summary"]["fair multitask LoRA"] = row(29.0, 3)  # the composition loses at 64
    assert claim_size(sizes) == 256  # no size beats: the larger on a tie of seeds


def test_a_claim_holds_only_against_the_single_model_with_a_searched_learning_rate():
    from bench.lm_caveats import rate_caveats
    from bench.lm_merge import merge_runs

    def run(seed, fair, rates, train=64):
        domains = ("bbc", "rotten", "20news", "python")

        def system(overall):
            return {"domains": dict.fromkeys(domains, overall), "overall": {"perplexity": overall}}

        searched = {f"{r:g}": fair + i for i, r in enumerate(rates)}
        return {
            "seed": seed, "families": ["anchored", "multitask"], "cost": {},
            "systems": {"anchor alone": system(37.0), "fair multitask LoRA": system(fair),
                        "anchored experts, learned top-1": system(29.9)},
            "extras": {"fair_multitask": {"lr": rates[0], "router_perplexity": searched}},
            "meta": {"train": train, "command": "python bench/lm.py", "seconds": 60.0,
                     "machine": "test"},
        }  # fmt: skip

    given = [run(1, 34.0, [2e-3]), run(2, 34.0, [2e-3])]
    result = merge_runs([*given, run(0, 31.0, [5e-4, 1e-3, 2e-3])])
    assert result["fair_rates"][64][0] == {"lr": 5e-4, "searched": [5e-4, 1e-3, 2e-3]}
    (target, measured, met) = result["targets"][0]
    assert met and "on the seed(s) with a searched rate (0): 4 of 4" in measured
    [line] = rate_caveats(result)
    assert "given (0.002 on seed 1, 0.002 on seed 2)" in line
    assert "seed 0: 0.0005 of 0.0005, 0.001, 0.002" in line and "**beats** it" in line
    # tuned on seed 0, the single model wins there: the 3-seed mean (31.67 > 29.9) is no claim
    result = merge_runs([*given, run(0, 27.0, [5e-4, 1e-3, 2e-3])])
    (target, measured, met) = result["targets"][0]
    assert not met and "overall 29.900 against 27.000 (+10.7 %)" in measured
    assert "does **not** beat it" in rate_caveats(result)[0]
    assert result["claim_size"] == 64  # one size: still judged there, and not met
    # every seed given: the caveat says so; every seed searched: nothing to say
    only_given = merge_runs(given)
    assert rate_caveats(only_given)[0].endswith("not searched: a better-tuned single model "
                                                "may do better.")  # fmt: skip
    searched = [run(s, 34.0, [5e-4, 2e-3]) for s in (0, 1)]
    assert rate_caveats(merge_runs(searched)) == []
    assert "searched rate" not in merge_runs(searched)["targets"][0][1]


def test_each_contributor_keeps_the_learning_rate_best_on_its_own_router_texts(
    tmp_path, tiny_lm_folder, lm_domains
):
    from bench.lm_anchored import train_anchored
    from routing.cache import TensorCache
    from routing.data import DomainData, Split
    from routing.kinds.causal_lm.base import CausalBase
    from routing.kinds.causal_lm.composing import token_log_probs
    from routing.kinds.causal_lm.scoring import perplexity

    def longer(split):  # texts past the 32 tokens the scores start after
        return Split([" ".join(split.texts[i : i + 3]) for i in range(0, 24, 3)])

    data = {name: DomainData(name, [], longer(d.train), longer(d.router), Split([]))
            for name, d in lm_domains.items()}  # fmt: skip
    cache = TensorCache(tmp_path / "cache")
    tiny_lm = CausalBase(tiny_lm_folder, device="cpu", max_tokens=64)
    experts, seconds, search = train_anchored(tiny_lm, data, 0, tmp_path, coordinated=False,
                                              lrs=[1e-4, 3e-2], cache=cache)  # fmt: skip
    assert set(search) == {"weather", "food"} and len(experts) == 2 and min(seconds) > 0
    for expert, (name, chosen) in zip(experts, search.items(), strict=True):
        tried = chosen["router_perplexity"]
        assert set(tried) == {"0.0001", "0.03"} and tried["0.0001"] != tried["0.03"]
        assert chosen["lr"] == float(min(tried, key=tried.get))
        kept = perplexity(token_log_probs(expert, tiny_lm, data[name].router.texts, cache, 32))
        assert kept == min(tried.values())  # the expert returned is the one kept
    # a second call in the same folder trains nothing: same files, same recorded seconds
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("anchored-*.safetensors")}
    assert len(stamps) == 4
    again = train_anchored(tiny_lm, data, 0, tmp_path, coordinated=False, lrs=[1e-4, 3e-2],
                           cache=cache)  # fmt: skip
    assert again[1] == seconds and again[2] == search
    assert stamps == {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("anchored-*.safetensors")}
    # one rate: nothing searched, nothing scored
    assert train_anchored(tiny_lm, data, 0, tmp_path, coordinated=False, lrs=[3e-2])[2] == {}


def test_a_seeds_better_searched_run_counts_over_its_others_in_any_order():
    from bench.lm_caveats import expert_rate_caveats
    from bench.lm_merge import merge_runs

    domains = ("bbc", "rotten", "20news", "python")

    def run(seed, anchored, *, searched=False, fair=None):
        system = {"domains": dict.fromkeys(domains, anchored), "overall": {"perplexity": anchored}}
        extras = {}
        if searched:
            extras["expert_rates"] = {"anchored": {d: {"lr": 1e-3, "router_perplexity": {
                "0.001": 30.0, "0.002": 31.0}} for d in domains}}  # fmt: skip
        systems = {"anchored experts, learned top-1": system}
        if fair:
            systems["fair multitask LoRA"] = {**system, "overall": {"perplexity": fair[0]}}
            extras["fair_multitask"] = {"lr": fair[1], "router_perplexity": {
                f"{r:g}": p for r, p in fair[2].items()}}  # fmt: skip
        return {"seed": seed, "families": ["anchored", "multitask"], "cost": {},
                "systems": systems, "extras": extras,
                "meta": {"train": 64, "command": "python bench/lm.py", "seconds": 60.0,
                         "machine": "test"}}  # fmt: skip

    given = run(0, 30.0, fair=(33.0, 2e-3, {2e-3: 34.0}))
    searched = run(0, 29.0, searched=True, fair=(31.0, 5e-4, {5e-4: 30.1, 1e-3: 30.7}))
    for order in ([given, searched], [searched, given]):
        result = merge_runs([*order, run(1, 30.5)])
        summary = result["summary"]
        assert summary["anchored experts, learned top-1"]["overall"][0] == (29.0 + 30.5) / 2
        assert summary["fair multitask LoRA"]["overall"][0] == 31.0  # seed 1 ran none
        assert result["fair_rates"][64][0] == {"lr": 5e-4, "searched": [5e-4, 1e-3, 2e-3]}
        assert result["kept_expert_rates"][64] == {
            0: {"anchored": dict.fromkeys(domains, 1e-3)},
            1: {"anchored": None},
        }
        [line] = expert_rate_caveats(result)
        assert "seed 0: bbc 0.001, rotten 0.001, 20news 0.001, python 0.001" in line
        assert line.endswith("on seed(s) 1 it was given (0.002).")
    [line] = expert_rate_caveats(merge_runs([given, run(1, 30.5)]))
    assert line.endswith("learning rate was given (0.002) on every seed, not searched "
                         "(`--expert-lr`).")  # fmt: skip
    # the single model's search spread over runs: a later rate lower on the router texts wins
    lower = run(0, 29.0, fair=(30.5, 2.5e-4, {2.5e-4: 29.9}))
    for order in ([given, searched, lower], [lower, searched, given]):
        result = merge_runs(order)
        assert result["summary"]["fair multitask LoRA"]["overall"][0] == 30.5
        assert result["fair_rates"][64][0] == {"lr": 2.5e-4, "searched": [2.5e-4, 5e-4, 1e-3, 2e-3]}
