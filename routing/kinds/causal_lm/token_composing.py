"""Composing per token: router rows from the domains' embeddings (no training; a new
expert's row leaves the others as they were), optionally tuned on the router texts with
every expert frozen, then scored on the held-out texts as the sequence-level compositions
are (perplexity of each text after its first `prefix_tokens` tokens), with the experts
alone and the base beside it, and where each domain's tokens went in every layer."""

from __future__ import annotations

import time

import torch

from ...cache import TensorCache
from ...config import LMRouting
from ...metrics import utilisation
from ...splits import DomainData
from .base import CausalBase
from .composing import Composed, cached_split
from .experts import LMExpert
from .scoring import perplexity
from .token_model import TokenMoECausalLM, tune_routers
from .token_routing import domain_row, shared_row


def router_texts(data: dict[str, DomainData], domains: list[str]) -> list[str]:
    """Every domain's router texts, each domain once, in the experts' order."""
    return [text for d in dict.fromkeys(domains) for text in data[d].router.texts]


def token_routers(base, experts, expert_domains, data, *, cache, routing: LMRouting,
                  previous=None, shared_texts=None) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """(L, 1 + N, D) the shared expert's row and each expert's; rows of `previous` (a
    per-token composition) are kept for its shared expert and for every expert it holds."""
    kept = {}
    if isinstance(previous, TokenMoECausalLM):
        old = previous.routers  # (L, E, D)
        kept[None] = old[:, 0]
        for k, e in enumerate(previous.experts):
            kept[e.sha256] = old[:, 1 + k]
    t = routing.token_temperature
    if None not in kept:
        texts = shared_texts or router_texts(data, expert_domains)
        kept[None] = shared_row(base, texts, temperature=t, cache=cache)
    rows = [kept[None]]
    for expert, domain in zip(experts, expert_domains, strict=True):
        row = kept.get(expert.sha256)
        if row is None:
            row = domain_row(base, data[domain].router.texts, temperature=t, cache=cache)
        rows.append(row)
    new = sum(1 for e in experts if e.sha256 not in kept)
    return torch.stack(rows, 1), {"rows_kept": len(experts) - new, "rows_new": new}


def compose_tokens(base: CausalBase, experts: list[LMExpert], expert_domains: list[str],
                   data: dict[str, DomainData], *, cache: TensorCache, routing: LMRouting,
                   previous=None, shared_texts: list[str] | None = None,
                   progress=False) -> Composed:  # fmt: skip
    """A per-token composition of `experts`, scored on the eval splits."""
    started = time.perf_counter()
    routers, info = token_routers(
        base, experts, expert_domains, data, cache=cache, routing=routing,
        previous=previous, shared_texts=shared_texts,
    )  # fmt: skip
    model = TokenMoECausalLM(
        base, experts, expert_domains, routers=routers, top_k=routing.token_top_k,
        prefix_tokens=routing.prefix_tokens,
    )  # fmt: skip
    info.update(granularity="token", router="domain embeddings", tuned=routing.tune_router)
    info["rows_seconds"] = time.perf_counter() - started
    if routing.tune_router:
        texts = router_texts(data, expert_domains)
        info["tuning"] = tune_routers(model, texts, steps=routing.tune_steps)
    info["compose_seconds"] = time.perf_counter() - started
    model.info.update(info)
    evaluation = cached_split(experts, expert_domains, data, "eval", base, cache,
                              routing, progress)  # fmt: skip
    report = evaluate_tokens(model, data, evaluation)
    model.info["metrics"] = report
    texts = {d: data[d].eval.texts for d in evaluation.domains}
    return Composed(model, report, evaluation, texts)


def evaluate_tokens(model: TokenMoECausalLM, data: dict[str, DomainData], split) -> dict:
    """The held-out report of a per-token composition: per domain its perplexity, the
    base's and each expert's alone (from `split`, the sequence-level cache), and where its
    tokens went: `layer_routing` (L, domains, E), its mean over layers as the routing
    matrix, and the top expert's share of each expert's traffic as its load."""
    lps, per_domain, layer_routing = [], {}, []
    for d, name in enumerate(split.domains):
        texts = data[name].eval.texts
        lp = model.token_log_probs(texts)  # (n, T)
        rows = split.domain_idx == d
        per_domain[name] = {
            "n": int(rows.sum()),
            "tokens": int((~torch.isnan(split.base_lp[rows])).sum()),
            "perplexity": perplexity(lp),
            "base_perplexity": perplexity(split.base_lp[rows]),
            "experts": [perplexity(split.token_lp[rows, k]) for k in range(len(model.experts))],
        }
        lps.append(lp)
        layer_routing.append(model.token_routing(texts))  # (L, E)
    by_layer = torch.stack(layer_routing, 1)  # (L, domains, E)
    matrix = by_layer.mean(0)  # (domains, E)
    home = []
    for d, name in enumerate(split.domains):
        own = [1 + k for k, dom in enumerate(model.expert_domains) if dom == name]
        home.append(float(matrix[d, own].sum()))
    counts = torch.tensor([per_domain[n]["tokens"] for n in split.domains], dtype=torch.float)
    load = (matrix * counts[:, None]).sum(0) / counts.sum().clamp(min=1)  # (E,)
    mixed = torch.cat(lps)
    return {
        "granularity": "token",
        "experts_order": list(model.names),
        "shared_columns": int(model.shared),  # the matrices' first column: the shared expert
        "overall": {
            "n": len(mixed),
            "tokens": int((~torch.isnan(split.base_lp)).sum()),
            "perplexity": perplexity(mixed),
            "base_perplexity": perplexity(split.base_lp),
            "domain_mean_perplexity": sum(v["perplexity"] for v in per_domain.values())
            / max(len(per_domain), 1),
            "routing_accuracy": sum(home) / max(len(home), 1),
        },
        "domains": per_domain,
        "domain_order": list(split.domains),
        "utilisation": utilisation(load[None, :]),
        "routing_matrix": matrix.tolist(),
        "layer_routing": by_layer.tolist(),
    }


@torch.inference_mode()
def token_contributions(composed: Composed) -> list[dict]:
    """Each expert's share of the tokens (its load) and how much the overall held-out
    perplexity rises when no token may go to it (positive: the expert helps)."""
    model, report = composed.model, composed.report
    full = report["overall"]["perplexity"]
    load = report["utilisation"]["load"]
    texts = [t for d in composed.eval_split.domains for t in composed.eval_texts[d]]
    out = []
    for k in range(len(model.experts)):
        column = k + 1 if model.shared else k
        for layer in model.layers:
            layer.left_out = {column}
        try:
            without = perplexity(model.token_log_probs(texts))
        finally:
            for layer in model.layers:
                layer.left_out = set()
        out.append({"drop": without - full, "share": load[column]})
    return out
