"""Exported language-model compositions: the folder loads with AutoModelForCausalLM and
trust_remote_code, generates the library's tokens and scores the library's mixture, runs
in pipeline("text-generation"), and holds each expert as a plain PEFT adapter."""

# ruff: noqa: F811 -- fixtures are imported to be used here

import json

import pytest
import torch
import yaml

from devtools.tiny_lm import peft_lm
from routing.kinds.causal_lm.export import LM_EXPORT_FILES, export_lm_composition
from routing.model_card import CardInfo
from tests.routing.lm_fixtures import (  # noqa: F401 (fixtures)
    PROMPTS,
    composed,
    lm_domains,
    lm_expert_files,
    tiny_lm,
    tiny_lm_folder,
)


def load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    return model, AutoTokenizer.from_pretrained(folder, trust_remote_code=True)


def exported_generation(folder, prompts, max_new_tokens=8):
    model, tokenizer = load(folder)
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    tokens = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
    new = tokens[:, batch["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new, skip_special_tokens=True)


CASES = {
    "learned top-1": {"top_k": 1},
    "learned top-2 mixed": {"top_k": 2},
    "learned top-2 merged": {"top_k": 2, "mixing": "merge"},
    "centroid top-1": {"top_k": 1, "router": "centroid"},
    "prefix-likelihood top-2 mixed": {"top_k": 2, "router": "prefix-likelihood"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_export_generates_the_librarys_tokens(
    case, tiny_lm, lm_expert_files, lm_domains, cache, tmp_path
):
    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache, **CASES[case]).model
    folder = export_lm_composition(model, tmp_path / "export")
    assert {p.name for p in folder.iterdir()} >= set(LM_EXPORT_FILES)
    library = [g.text for g in model.generate(PROMPTS, max_new_tokens=8)]
    assert exported_generation(folder, PROMPTS) == library


def test_the_export_scores_the_librarys_mixture(
    tiny_lm, lm_expert_files, lm_domains, cache, tmp_path
):
    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache, top_k=2).model
    folder = export_lm_composition(model, tmp_path / "export")
    hf, _ = load(folder)
    texts = lm_domains["weather"].eval.texts[:3] + lm_domains["food"].eval.texts[:3]
    batch = tiny_lm.tokenize(texts)
    with torch.no_grad():
        logits = hf(**batch).logits  # log-probabilities of the mixture
    from routing.kinds.causal_lm.base import continuation_log_probs

    exported = continuation_log_probs(logits, batch, model.routing.prefix_tokens)
    torch.testing.assert_close(
        exported, model.token_log_probs(texts), atol=1e-4, rtol=0, equal_nan=True
    )


def test_pipeline_runs_the_export_and_the_experts_load_with_peft(
    tiny_lm, tiny_lm_folder, lm_expert_files, lm_domains, cache, tmp_path
):
    from transformers import pipeline

    files, _ = lm_expert_files
    model = composed(tiny_lm, files, lm_domains, cache).model
    card = CardInfo(title="Tiny LM v1", repo_id="org/tiny-lm", mixture="tiny-lm", version=1)
    folder = export_lm_composition(model, tmp_path / "export", card)
    generate = pipeline("text-generation", model=str(folder), trust_remote_code=True)
    out = generate(PROMPTS[0], max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert out.startswith(PROMPTS[0]) and len(out) > len(PROMPTS[0])
    router = json.loads((folder / "router.json").read_text())
    for k, entry in enumerate(router["experts"]):
        peft = peft_lm(folder / entry["folder"], tiny_lm_folder)
        batch = tiny_lm.tokenize(PROMPTS)
        with torch.no_grad(), tiny_lm.bank.only(model.names[k], len(PROMPTS)):
            ours = tiny_lm.model(**batch).logits
        torch.testing.assert_close(peft(**batch).logits, ours, atol=1e-5, rtol=0)
    text = (folder / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    results = meta["model-index"][0]["results"]
    assert {r["metrics"][0]["type"] for r in results} == {"perplexity"}
    assert 'pipeline("text-generation", model="org/tiny-lm", trust_remote_code=True)' in text
    assert 'subfolder="experts/00-' in text
