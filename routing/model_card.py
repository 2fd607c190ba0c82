"""The README.md model card of an exported composition.

YAML metadata through `huggingface_hub.ModelCardData` (base_model, licence,
tags, datasets, model-index with one result per domain), then a body that
credits every contributor with their expert's share of routed traffic and
measured contribution, and shows the utilisation figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .metrics import matrix_rows

# Rank of a licence when combined with others: a combination carries the most
# restrictive one. Two different licences of rank 3 (share-alike and
# non-commercial) cannot be combined, and the card says `other`.
LICENCE_RANK = {"mit": 0, "bsd-3-clause": 0, "apache-2.0": 1, "cc-by-4.0": 2}
LICENCE_RANK.update({"cc-by-sa-4.0": 3, "cc-by-nc-4.0": 3})


@dataclass
class Contributor:
    expert: str
    user: str
    domain: str
    kind: str
    licence: str
    sha256: str
    share: float | None = None  # share of routed traffic (0-1)
    drop: float | None = None  # held-out accuracy lost without this expert
    url: str = ""


@dataclass
class CardInfo:
    title: str
    description: str = ""
    repo_id: str = ""
    mixture: str = ""
    version: int | None = None
    base_licence: str = "apache-2.0"
    contributors: list[Contributor] = field(default_factory=list)
    datasets: dict[str, str] = field(default_factory=dict)  # domain -> dataset id or source
    source_url: str = ""  # the composition's page on the hub
    metrics: dict | None = None  # the evaluation report; defaults to the composition's own
    # domains of the mixture with no expert in this composition: it cannot answer their
    # labels, and its overall figures do not cover them
    missing_domains: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        return {"mixture": self.mixture, "version": self.version, "source_url": self.source_url}


def combined_licence(licences: list[str]) -> tuple[str, str | None]:
    """(licence id, licence name when the id is `other`) of a combination."""
    distinct = sorted(set(licences))
    if len(distinct) == 1:
        return distinct[0], None
    if any(x not in LICENCE_RANK for x in distinct):
        return "other", "mixed-licences"
    top = max(LICENCE_RANK[x] for x in distinct)
    strictest = [x for x in distinct if LICENCE_RANK[x] == top]
    if len(strictest) == 1:
        return strictest[0], None
    return "other", "mixed-licences"


def dataset_id(source: str) -> str:
    """A metadata-safe identifier for a domain's data source ("packaged bbc" -> "packaged-bbc")."""
    return re.sub(r"[^\w./-]+", "-", source.strip()).strip("-") or "unknown"


def _card_data(composition, card: CardInfo, metrics: dict):
    from huggingface_hub import EvalResult, ModelCardData

    licences = [card.base_licence] + [c.licence for c in card.contributors]
    licence, licence_name = combined_licence(licences)
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
    base = composition.encoder.name
    is_hub_id = base.count("/") == 1 and not base.startswith((".", "/"))
    extra = {"license_name": licence_name} if licence_name else {}
    return ModelCardData(
        base_model=base if is_hub_id else None,
        license=licence,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["moecollab", "mixture-of-experts", "text-classification", "custom_code"],
        datasets=sorted({dataset_id(s) for s in card.datasets.values()}) or None,
        model_name=card.repo_id.split("/")[-1] if card.repo_id else card.title,
        eval_results=results or None,
        **extra,
    )


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _points(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}"


def model_card(composition, card: CardInfo) -> str:
    metrics = card.metrics or composition.info.get("metrics") or {}
    data = _card_data(composition, card, metrics)
    repo = card.repo_id or "path/to/this/folder"
    lines = [f"# {card.title}", ""]
    if card.description:
        lines += [card.description.strip(), ""]
    version = f" v{card.version}" if card.version is not None else ""
    source = f" ([source]({card.source_url}))" if card.source_url else ""
    n_experts, n_people = len(composition.experts), len({c.user for c in card.contributors})
    experts = f"{n_experts} expert{'s' if n_experts != 1 else ''}"
    people = {0: "independent contributors", 1: "one person"}.get(n_people, f"{n_people} people")
    share = "shares" if n_experts == 1 else "share"
    lines += [
        f"A Mixture-of-Experts text classifier built collaboratively on MoECollab Hub: "
        f"composition{version} of the mixture `{card.mixture or card.title}`{source}. "
        f"{experts} contributed by {people} {share} the frozen "
        f"base encoder `{composition.encoder.name}`; a gate reads the encoder's mean-pooled "
        f"output and sends each input to its top {composition.top_k} expert(s). "
        f"Labels: {', '.join(f'`{x}`' for x in composition.labels)}.",
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
    if card.missing_domains:
        missing = ", ".join(f"`{d}`" for d in card.missing_domains)
        lines += [
            "",
            f"The mixture also has domains with no expert yet: {missing}. This composition "
            "cannot answer their labels, and the overall figures above cover only the "
            f"{len(metrics.get('domains', {}))} domains it has experts for.",
        ]
    lines += [
        "",
        "## Contributors",
        "",
        "Every expert, who made it, its share of routed traffic on the held-out sets and the "
        "held-out accuracy the mixture loses without it (in points).",
        "",
        "| Expert | Contributor | Domain | Kind | Licence | Traffic share | Contribution |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for c in card.contributors:
        name = f"[{c.expert}]({c.url})" if c.url else c.expert
        lines.append(
            f"| {name} | {c.user} | {c.domain} | {c.kind} | {c.licence} | "
            f"{_pct(c.share)} | {_points(c.drop)} |"
        )
    lines += _utilisation(composition, metrics)
    licence = data.license if data.license != "other" else "other (mixed licences)"
    lines += [
        "",
        "## Licence",
        "",
        f"`{licence}`: the most restrictive licence among the base encoder "
        f"(`{card.base_licence}`) and the experts (listed above); when two of them cannot be "
        "combined the card says `other`, and a user must meet every component's terms.",
        "",
        "## Provenance",
        "",
        f"Base encoder `{composition.encoder.name}` (weights included, frozen). Experts by "
        "sha256, in gate order:",
        "",
    ]
    lines += [f"- `{e.sha256}` {e.name} ({d})" for e, d in _pairs(composition)]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"


def _pairs(composition):
    return zip(composition.experts, composition.expert_domains, strict=True)


def _utilisation(composition, metrics: dict) -> list[str]:
    util = metrics.get("utilisation")
    if not util:
        return []
    names = [e.name for e in composition.experts]
    lines = [
        "",
        "## Expert utilisation",
        "",
        f"Normalised load entropy {util['entropy']:.3f} (1 = perfectly even); "
        f"experts receiving under 1 % of inputs: {util['under_1pct']}.",
        "",
        "| Expert | Share of inputs |",
        "|---|---:|",
    ]
    lines += [f"| {n} | {_pct(x)} |" for n, x in zip(names, util["load"], strict=True)]
    matrix = metrics.get("routing_matrix")
    domains = matrix_rows(metrics)
    if matrix and len(matrix) == len(domains):
        lines += [
            "",
            "Routing matrix (mean gate weight per held-out domain and expert):",
            "",
            "| Domain | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for domain, row in zip(domains, matrix, strict=True):
            lines.append(f"| {domain} | " + " | ".join(f"{x:.2f}" for x in row) + " |")
    return lines
