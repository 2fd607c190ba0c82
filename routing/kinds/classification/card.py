"""The model card of an exported classifier composition."""

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


def _eval_results(card: CardInfo, metrics: dict) -> list:
    from huggingface_hub import EvalResult

    results = []
    for domain, m in metrics.get("domains", {}).items():
        dataset = dataset_id(card.datasets.get(domain) or domain)
        for metric_type, value, name in (
            ("accuracy", m["accuracy"], "Accuracy"),
            ("f1", m["macro_f1"], "Macro F1"),
        ):
            results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=dataset,
                    dataset_name=domain,
                    dataset_split="held-out",
                    metric_type=metric_type,
                    metric_name=name,
                    metric_value=round(float(value), 4),
                )
            )
    return results


def model_card(composition, card: CardInfo) -> str:
    metrics = card.metrics or composition.info.get("metrics") or {}
    base = composition.encoder.name
    data = card_data(
        card,
        base,
        _eval_results(card, metrics),
        pipeline_tag="text-classification",
        tags=["text-classification"],
    )
    repo = card.repo_id or "path/to/this/folder"
    lines = [f"# {card.title}", ""]
    if card.description:
        lines += [card.description.strip(), ""]
    version = f" v{card.version}" if card.version is not None else ""
    source = f" ([source]({card.source_url}))" if card.source_url else ""
    experts, people, share = people_phrase(len(composition.experts), card.contributors)
    reads = (
        ", and every expert's confidence on it (its top probability and entropy),"
        if composition.reads_experts
        else ""
    )
    calibrated = (
        " Each expert's output is calibrated by a temperature fitted on held-out router data."
        if bool((composition.temperatures != 1).any())
        else ""
    )
    lines += [
        f"A Mixture-of-Experts text classifier built collaboratively on MoECollab Hub: "
        f"composition{version} of the mixture `{card.mixture or card.title}`{source}. "
        f"{experts} contributed by {people} {share} the frozen "
        f"base encoder `{base}`; a gate reads the encoder's mean-pooled "
        f"output{reads} and sends each input to its top {composition.top_k} expert(s)."
        f"{calibrated} Labels: {', '.join(f'`{x}`' for x in composition.labels)}.",
        "",
        "## Use it",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'classify = pipeline("text-classification", model="{repo}", trust_remote_code=True)',
        'print(classify("The striker scored twice in the second half."))',
        "```",
        "",
        "Or the model and tokenizer themselves (both need `trust_remote_code=True`):",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        f'model = AutoModelForSequenceClassification.from_pretrained("{repo}", '
        "trust_remote_code=True)",
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}", trust_remote_code=True)',
        'out = model(**tokenizer(["A quiet, moving film."], padding=True, return_tensors="pt"))',
        "print(out.logits.softmax(-1), out.router_weights)",
        "```",
        "",
        f"Inputs longer than {composition.encoder.max_length} tokens are cut to that length "
        "inside the model, as the hub cut them when it trained and scored the gate.",
        "",
        "The logits are log-probabilities of the mixture, so the pipeline's softmax gives "
        "p(y|x) = sum over the selected experts k of g_k(x) p_k(y|x). "
        "`model(**inputs).router_weights` holds the gate's weights per input. "
        "Only the selected experts run on an input.",
        "",
        "## Held-out scores",
        "",
        "| Domain | Examples | Accuracy | Macro-F1 |",
        "|---|---:|---:|---:|",
    ]
    for domain, m in metrics.get("domains", {}).items():
        lines.append(f"| {domain} | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
    if "overall" in metrics:
        o = metrics["overall"]
        lines.append(f"| **overall** | {o['n']} | {o['accuracy']:.4f} | {o['macro_f1']:.4f} |")
    lines += missing_domains_note(
        card, len(metrics.get("domains", {})), "cannot answer their labels"
    )
    lines += contributors_section(
        card, "the held-out accuracy the mixture loses without it (in points)"
    )
    lines += utilisation_section([e.name for e in composition.experts], metrics)
    pairs = zip(composition.experts, composition.expert_domains, strict=True)
    lines += licence_and_provenance(
        card, data.license, base, "encoder", [(e.sha256, e.name, d) for e, d in pairs]
    )
    return render(data, lines)
