"""Language-model compositions: equivalences with PEFT, top-k, merging, generation, and
routers that read only the prefix (tiny random Llama)."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import pytest
import torch

from devtools.tiny_lm import peft_lm
from routing.config import LMRouting
from routing.kinds.causal_lm.generation import _left_padded, generate_mixed
from routing.kinds.causal_lm.model import MoECausalLM
from routing.kinds.causal_lm.scoring import mixture_log_probs
from tests.routing.lm_fixtures import (  # noqa: F401 (fixtures)
    PREFIX,
    PROMPTS,
    composed,
    lm_domains,
    lm_expert_files,
    load_experts,
    tiny_lm,
    tiny_lm_folder,
)

TEXTS_OF = {"weather": 6, "food": 6}


def eval_texts(data):
    return [t for d, n in TEXTS_OF.items() for t in data[d].eval.texts[:n]]


def test_trained_experts_lower_their_own_domains_perplexity(lm_expert_files):
    _, summaries = lm_expert_files
    for summary in summaries.values():
        assert summary["eval_perplexity"] < 0.95 * summary["base_perplexity"]


def test_a_one_expert_composition_equals_the_peft_model_with_that_adapter(
    tiny_lm, tiny_lm_folder, lm_expert_files, lm_domains, tmp_path
):
    files, _ = lm_expert_files
    expert = load_experts(tiny_lm, files)[0]
    peft_folder = expert.save_peft(tmp_path / "peft", tiny_lm_folder)
    model = MoECausalLM.of_one(tiny_lm, expert, LMRouting(prefix_tokens=PREFIX))
    texts = eval_texts(lm_domains)
    batch = tiny_lm.tokenize(texts)
    with torch.no_grad(), tiny_lm.bank.only(model.names[0], len(texts)):
        ours = tiny_lm.model(**batch).logits
    theirs = peft_lm(peft_folder, tiny_lm_folder)(**batch).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    assert torch.isfinite(model.token_log_probs(texts)[:, 0]).all()


def test_top_k_with_k_equal_to_n_equals_the_dense_mixture(
    tiny_lm, lm_expert_files, lm_domains, cache
):
    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache, top_k=2).model
    texts = eval_texts(lm_domains)
    weights = model.route(texts, top_k=2)  # (n, 2): every expert, dense
    assert (weights > 0).all()
    each = torch.stack(
        [tiny_lm.token_log_probs(texts, prefix_tokens=PREFIX, expert=n) for n in model.names], 1
    )  # (n, N, T)
    dense = mixture_log_probs(weights, each)
    torch.testing.assert_close(model.token_log_probs(texts, top_k=2), dense, equal_nan=True)


def test_top1_merged_equals_top1_unmerged(tiny_lm, lm_expert_files, lm_domains, cache):
    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache, top_k=1).model
    texts = eval_texts(lm_domains)
    unmerged = model.token_log_probs(texts)
    model.routing.mixing = "merge"
    torch.testing.assert_close(model.token_log_probs(texts), unmerged, atol=1e-5, rtol=0,
                               equal_nan=True)  # fmt: skip
    merged_text = [g.text for g in model.generate(PROMPTS, max_new_tokens=6)]
    model.routing.mixing = "mix"
    assert merged_text == [g.text for g in model.generate(PROMPTS, max_new_tokens=6)]


def test_greedy_top1_generation_equals_peft_with_the_routed_adapter(
    tiny_lm, tiny_lm_folder, lm_expert_files, lm_domains, cache, tmp_path
):
    from transformers import AutoTokenizer

    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache, top_k=1).model
    outputs = model.generate(PROMPTS, max_new_tokens=8)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_folder)
    routed = model.route(PROMPTS).argmax(-1).tolist()
    assert set(routed) == {0, 1}  # both experts are used, grouped in one call
    for prompt, out, k in zip(PROMPTS, outputs, routed, strict=True):
        folder = model.experts[k].save_peft(tmp_path / f"peft{k}", tiny_lm_folder)
        batch = tokenizer([prompt], return_tensors="pt")
        tokens = peft_lm(folder, tiny_lm_folder).generate(**batch, max_new_tokens=8,
                                                           do_sample=False)  # fmt: skip
        new = tokenizer.decode(tokens[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        assert (out.text, out.experts[0][0]) == (new, model.experts[k].name)


def test_mixed_generation_with_kv_caches_equals_recomputing_the_mixture(
    tiny_lm, lm_expert_files, lm_domains, cache
):
    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache, top_k=2).model
    weights = model.route(PROMPTS, top_k=2)
    cached = generate_mixed(tiny_lm, PROMPTS, model.names, weights, max_new_tokens=6,
                            do_sample=False, temperature=1.0, top_p=1.0, seed=0)  # fmt: skip
    batch = _left_padded(tiny_lm, PROMPTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    for _ in range(6):  # the whole sequence again every step, no cache
        probs = 0
        for k, name in enumerate(model.names):
            with torch.no_grad(), tiny_lm.bank.only(name, len(ids)):
                logits = tiny_lm.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                ).logits
            probs = probs + weights[:, k, None] * torch.softmax(logits[:, -1], -1)
        ids = torch.cat([ids, probs.argmax(-1, keepdim=True)], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    recomputed = tiny_lm.tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :],
                                                skip_special_tokens=True)  # fmt: skip
    assert cached == recomputed


# Prefix likelihood reads 5 predicted tokens of experts trained for seconds: a weaker
# signal than the prefix features, well above chance (0.5) all the same.
@pytest.mark.parametrize(
    "router, accuracy", [("learned", 0.8), ("centroid", 0.8), ("prefix-likelihood", 0.6)]
)
def test_each_router_sends_each_domain_to_its_expert(
    router, accuracy, tiny_lm, lm_expert_files, lm_domains, cache
):
    files, _ = lm_expert_files
    report = composed(tiny_lm, files, lm_domains, cache, router=router).report
    assert report["overall"]["routing_accuracy"] > accuracy
    for m in report["domains"].values():
        assert m["perplexity"] < m["base_perplexity"]


def test_the_router_reads_only_the_prefix(tiny_lm, lm_expert_files, lm_domains, cache):
    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache).model
    texts = eval_texts(lm_domains)
    words = [t.split() for t in texts]
    swapped = [" ".join(w[:PREFIX] + ["honey"] * (len(w) - PREFIX)) for w in words]
    torch.testing.assert_close(model.route(texts, top_k=2), model.route(swapped, top_k=2))


def test_a_composition_folder_loads_back_the_same(
    tiny_lm, lm_expert_files, lm_domains, cache, tmp_path
):
    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache, top_k=2).model
    again = MoECausalLM.load(model.save(tmp_path / "mix"), base=tiny_lm)
    texts = eval_texts(lm_domains)
    torch.testing.assert_close(again.token_log_probs(texts), model.token_log_probs(texts),
                               equal_nan=True)  # fmt: skip
    assert [g.text for g in again.generate(PROMPTS)] == [g.text for g in model.generate(PROMPTS)]


def test_adding_an_expert_warm_starts_the_gate(tiny_lm, lm_expert_files, lm_domains, cache):
    from routing.kinds.causal_lm.composing import compose

    files, _ = lm_expert_files
    experts = load_experts(tiny_lm, files)
    routing = LMRouting(prefix_tokens=PREFIX)
    first = compose(tiny_lm, experts[:1], ["weather"], lm_domains, cache=cache, routing=routing)
    both = compose(tiny_lm, experts, ["weather", "food"], lm_domains, cache=cache,
                   routing=routing, previous=first.model)  # fmt: skip
    assert both.model.info["warm_start"] is True
    assert both.report["overall"]["routing_accuracy"] > 0.8
    again = compose(tiny_lm, experts, ["weather", "food"], lm_domains, cache=cache,
                    routing=routing, previous=first.model)  # fmt: skip
    assert again.model.info["gate_reused"] is True  # the same inputs: trained once


def test_contributions_say_what_each_expert_is_worth(tiny_lm, lm_expert_files, lm_domains, cache):
    from routing.kinds.causal_lm.composing import contributions

    files, _ = lm_expert_files
    result = composed(tiny_lm, files, lm_domains, cache)
    measured = contributions(result)
    assert len(measured) == 2 and all(m["drop"] > 0 for m in measured)
    assert sum(m["share"] for m in measured) == pytest.approx(1.0, abs=1e-4)
