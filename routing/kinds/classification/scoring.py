"""Scores of classification experts and compositions: accuracy, macro-F1, the report of a
composition, and why an expert scores no better than the majority label."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...metrics import routing_matrix, utilisation


def accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    return float((pred == target).float().mean()) if len(target) else float("nan")


def macro_f1(pred: torch.Tensor, target: torch.Tensor, labels: Sequence[int]) -> float:
    """Mean F1 over `labels`; a prediction outside them is simply wrong."""
    scores = []
    for label in labels:
        tp = int(((pred == label) & (target == label)).sum())
        fp = int(((pred == label) & (target != label)).sum())
        fn = int(((pred != label) & (target == label)).sum())
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return sum(scores) / len(scores) if scores else float("nan")


def evaluate_predictions(
    probs: torch.Tensor,  # (n, U) mixture distribution in the union label space
    weights: torch.Tensor,  # (n, N) routing weights used
    targets: torch.Tensor,  # (n,) union label index
    domain_idx: torch.Tensor,  # (n,) domain index
    domains: Sequence[str],
    domain_labels: Sequence[Sequence[int]],  # union indices of each domain's labels
) -> dict:
    """Accuracy and macro-F1 per domain and overall, utilisation, routing matrix."""
    pred = probs.argmax(-1)
    per_domain = {}
    for d, name in enumerate(domains):
        mask = domain_idx == d
        per_domain[name] = {
            "n": int(mask.sum()),
            "accuracy": accuracy(pred[mask], targets[mask]),
            "macro_f1": macro_f1(pred[mask], targets[mask], domain_labels[d]),
        }
    all_labels = sorted({i for labels in domain_labels for i in labels})
    return {
        "overall": {
            "n": len(targets),
            "accuracy": accuracy(pred, targets),
            "macro_f1": macro_f1(pred, targets, all_labels),
            "domain_mean_accuracy": sum(v["accuracy"] for v in per_domain.values())
            / max(len(per_domain), 1),
        },
        "domains": per_domain,
        # The matrix's rows, in order: a JSON object's key order does not survive every
        # store (PostgreSQL's jsonb sorts keys), so the order is written down.
        "domain_order": list(domains),
        "utilisation": utilisation(weights),
        "routing_matrix": routing_matrix(weights, domain_idx, len(domains)),
    }


def likely_causes(pred: torch.Tensor, truth: torch.Tensor, labels: list[str]) -> list[str]:
    """Why an expert scores no better than the majority label, most likely first, read
    off its held-out predictions (`pred`, `truth`: (n,) label indices)."""
    n = len(truth)
    causes: list[tuple[float, str]] = []
    # If each predicted label mostly stands for one true label, the outputs are right
    # but named wrongly: the label order differs from the domain's.
    mapped = 0
    renamed = {}
    for p in pred.unique().tolist():
        hits = truth[pred == p]  # the true labels of the texts it called `p`
        t = int(torch.mode(hits).values)
        mapped += int((hits == t).sum())
        if t != p and 0 <= t < len(labels):
            renamed[labels[p]] = labels[t]
    mapped_accuracy = mapped / max(n, 1)
    if renamed and mapped_accuracy > accuracy(pred, truth) + 0.2:
        pairs = ", ".join(f"{a!r} looks like {b!r}" for a, b in sorted(renamed.items()))
        causes.append(
            (
                mapped_accuracy,
                f"the label order differs from the domain's {labels}: renamed, the outputs "
                f"would score {mapped_accuracy:.4f} ({pairs})",
            )
        )
    top = torch.mode(pred).values.item()
    share = float((pred == top).float().mean()) if n else 0.0
    if share >= 0.9:
        causes.append(
            (
                share,
                f"it answers {labels[top]!r} for {share:.0%} of the texts: trained too briefly, "
                "on too few examples, or on data dominated by that label",
            )
        )
    causes.append(
        (
            0.0,
            "its training data differs from this domain's texts (another source, style or "
            "labelling), or the domain is hard for an expert of this size: train on data "
            "like the domain's, longer, or with a larger expert",
        )
    )
    return [text for _, text in sorted(causes, key=lambda c: -c[0])]
