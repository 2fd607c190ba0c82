"""What every kind's model card shares: the contributors' credits, the combined licence,
utilisation and provenance sections, and the YAML front matter.

Each kind writes its own card (`routing.kinds.<kind>.card`) from these parts: YAML
metadata through `huggingface_hub.ModelCardData` (base_model, licence, tags, datasets,
model-index with one result per domain), then a body that says how to use the model,
shows its held-out scores, credits every contributor with their expert's share of
routed traffic and measured contribution, and shows the utilisation figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .report import matrix_rows

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
    architecture: str  # head or lora
    licence: str
    sha256: str
    share: float | None = None  # share of routed traffic (0-1)
    drop: float | None = None  # held-out score lost without this expert (the kind's metric)
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


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def points(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}"


def people_phrase(n_experts: int, contributors: list[Contributor]) -> tuple[str, str, str]:
    """("3 experts", "2 people", "share") for the card's opening sentence."""
    n_people = len({c.user for c in contributors})
    experts = f"{n_experts} expert{'s' if n_experts != 1 else ''}"
    people = {0: "independent contributors", 1: "one person"}.get(n_people, f"{n_people} people")
    return experts, people, "shares" if n_experts == 1 else "share"


def missing_domains_note(card: CardInfo, covered: int, cannot: str) -> list[str]:
    """What a card says of the mixture's domains without an expert: `cannot` says what the
    composition cannot do for them."""
    if not card.missing_domains:
        return []
    missing = ", ".join(f"`{d}`" for d in card.missing_domains)
    return [
        "",
        f"The mixture also has domains with no expert yet: {missing}. This composition "
        f"{cannot}, and the overall figures above cover only the "
        f"{covered} domains it has experts for.",
    ]


def contributors_section(card: CardInfo, lost: str) -> list[str]:
    """Who made each expert, its traffic share and what the mixture loses without it."""
    lines = [
        "",
        "## Contributors",
        "",
        f"Every expert, who made it, its share of routed traffic on the held-out sets and {lost}.",
        "",
        "| Expert | Contributor | Domain | Architecture | Licence | Traffic share | Contribution |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for c in card.contributors:
        name = f"[{c.expert}]({c.url})" if c.url else c.expert
        lines.append(
            f"| {name} | {c.user} | {c.domain} | {c.architecture} | {c.licence} | "
            f"{pct(c.share)} | {points(c.drop)} |"
        )
    return lines


def utilisation_section(names: list[str], metrics: dict) -> list[str]:
    util = metrics.get("utilisation")
    if not util:
        return []
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
    lines += [f"| {n} | {pct(x)} |" for n, x in zip(names, util["load"], strict=True)]
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


def licence_and_provenance(
    card: CardInfo, licence: str, base_name: str, what: str, experts: list[tuple]
) -> list[str]:
    """The licence section and the exact inputs: `experts` is [(sha256, name, domain)]."""
    licence = licence if licence != "other" else "other (mixed licences)"
    lines = [
        "",
        "## Licence",
        "",
        f"`{licence}`: the most restrictive licence among the base {what} "
        f"(`{card.base_licence}`) and the experts (listed above); when two of them cannot be "
        "combined the card says `other`, and a user must meet every component's terms.",
        "",
        "## Provenance",
        "",
        f"Base {what} `{base_name}` (weights included, frozen). Experts by sha256, in gate order:",
        "",
    ]
    return lines + [f"- `{sha}` {name} ({domain})" for sha, name, domain in experts]


def card_data(card: CardInfo, base_name: str, eval_results: list, *, pipeline_tag: str, tags,
              custom_code: bool = True):  # fmt: skip
    """The YAML metadata: licence of the whole, base model, datasets, model-index."""
    from huggingface_hub import ModelCardData

    licences = [card.base_licence] + [c.licence for c in card.contributors]
    licence, licence_name = combined_licence(licences)
    is_hub_id = base_name.count("/") == 1 and not base_name.startswith((".", "/"))
    extra = {"license_name": licence_name} if licence_name else {}
    return ModelCardData(
        base_model=base_name if is_hub_id else None,
        license=licence,
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        tags=["moecollab", "mixture-of-experts", *tags, *(["custom_code"] if custom_code else [])],
        datasets=sorted({dataset_id(s) for s in card.datasets.values()}) or None,
        model_name=card.repo_id.split("/")[-1] if card.repo_id else card.title,
        eval_results=eval_results or None,
        **extra,
    )


def render(data, lines: list[str]) -> str:
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
