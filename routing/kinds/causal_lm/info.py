"""What a language-model mixture is, for the hub's pages, forms and API (no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...basemodels import gguf_file
from ...config import LMRouting, from_dict
from ...gguf import converter_missing
from ..interface import KindInfo
from .layout import MAX_LM_RANK, MLP_PROJECTIONS, MODULES, PEFT_ANCHOR_KEY
from .snippets import peft_training_snippet


@dataclass(frozen=True)
class CausalLMInfo(KindInfo):
    def page_context(self, routing: dict | None, base_name: str, *, contract: dict | None = None,
                     anchor_url: str = "") -> dict:  # fmt: skip
        contract = contract or {}
        return {
            "lm": from_dict(LMRouting, (routing or {}).get("lm")),
            "peft_snippet": peft_training_snippet(
                base_name,
                targets=contract.get("recommended_modules") or MLP_PROJECTIONS,
                anchor=contract.get("anchor_sha256") or "",
                anchor_url=anchor_url,
            ),
            "gguf_file": gguf_file(base_name),
        }

    def expert_contract(self, base, routing: dict | None) -> dict:
        """Besides the base: its anchor (sha256), the modules an expert may adapt (the MLP
        only in a per-token mixture) and recommends, the rank cap, the routing."""
        lm = from_dict(LMRouting, (routing or {}).get("lm"))
        allowed = MLP_PROJECTIONS if lm.granularity == "token" else MODULES
        return {
            **super().expert_contract(base, routing),
            "anchor_sha256": base.anchor or None,
            "granularity": lm.granularity,
            "target_modules": list(allowed),
            "recommended_modules": list(MLP_PROJECTIONS),
            "max_rank": MAX_LM_RANK,
            "peft_anchor_key": PEFT_ANCHOR_KEY if base.anchor else None,
        }

    def expert_figures(self, metrics: dict, report: dict, domain: str,
                       anchor_report: dict | None = None) -> list[dict]:  # fmt: skip
        """Besides the compositions: the plain base and base + anchor on every domain (from
        the anchor's validation), and the expert alone on its own domain."""
        rows = super().expert_figures(metrics, report, domain, anchor_report)
        anchored = ((anchor_report or {}).get("metrics") or {}).get("domains") or {}
        for row in rows:
            figures = anchored.get(row["domain"]) or {}
            row["plain"] = figures.get("base_perplexity")
            row["anchored"] = figures.get("perplexity")
            if row["own"]:
                row["alone"] = metrics.get("perplexity")
                if not anchored:  # no anchor: the expert's own scoring has the base's
                    row["plain"] = metrics.get("base_perplexity")
        return rows

    def remote_code(self, metrics: dict) -> bool:
        """A per-token composition exports as a Mixtral checkpoint transformers ships."""
        return metrics.get("granularity") != "token"

    def gguf_refusal(self, metrics: dict) -> str | None:
        if self.remote_code(metrics):
            return ("routing per sequence has no architecture that llama.cpp runs; a mixture "
                    "that routes per token exports as a standard Mixtral checkpoint")  # fmt: skip
        return converter_missing()  # None: written by llama.cpp's converter when asked for

    def score_rows(self, metrics: dict, names: list[str], charted: list[int]) -> list[dict]:
        """Perplexity per domain against the base model's and each charted expert's alone."""
        rows = []
        for domain, m in (metrics.get("domains") or {}).items():
            alone = m.get("experts") or []
            best = min(range(len(alone)), key=lambda k: alone[k]) if alone else None
            base = m.get("base_perplexity")
            rows.append(
                {
                    "domain": domain,
                    "n": m.get("n"),
                    "tokens": m.get("tokens"),
                    "perplexity": m.get("perplexity"),
                    "base": base,
                    "plain": m.get("plain_perplexity"),  # anchored: the base without it
                    "gain": 1 - m["perplexity"] / base if base else math.nan,
                    "alone": [alone[k] if k < len(alone) else None for k in charted],
                    "best": alone[best] if best is not None else None,
                }
            )
        return rows

    def clean_routing(self, value) -> dict:
        """As every kind's, and a per-token setting is refused by name on a mixture that
        routes per sequence (it would do nothing there)."""
        cleaned = super().clean_routing(value)
        given = (value.get("lm") or {}) if isinstance(value, dict) else {}
        if cleaned["lm"]["granularity"] == "sequence" and given.get("tune_router") is True:
            raise ValueError(
                "routing.lm.tune_router tunes a per-token router; this mixture routes per "
                "sequence (routing.lm.granularity is 'sequence'): set granularity 'token' first"
            )
        return cleaned

    def check_routing_for_experts(self, routing: dict, experts: dict[str, list[str]]) -> None:
        """A per-token mixture routes among MLPs: experts with attention LoRA cannot be in it."""
        if routing["lm"]["granularity"] != "token":
            return
        outside = {name: sorted(set(m) - set(MLP_PROJECTIONS)) for name, m in experts.items()}
        outside = {name: m for name, m in outside.items() if m}
        if outside:
            listed = "; ".join(f"{name}: {', '.join(m)}" for name, m in outside.items())
            raise ValueError(
                "routing.lm.granularity 'token' routes each token among the experts' MLPs "
                f"and shares attention, but these experts adapt attention modules ({listed}): "
                "retire them first, or copy the mixture and route the copy per token"
            )

    def acceptance(self, tolerance: float) -> str:
        percent = f"{100 * tolerance:g} %"
        return (
            f"held-out perplexity at least {percent} below the base model's on the expert's "
            f"domain; no other domain's may rise by more than {percent}"
        )


INFO = CausalLMInfo(
    name="causal-lm",
    title="Language model",
    metric="perplexity",
    metric_title="Perplexity",
    higher_is_better=False,
    second_metric="base_perplexity",
    second_metric_title="Base model's",
    auto_class="AutoModelForCausalLM",
    pipeline_task="text-generation",
    example_input="The government announced",
    implementation="routing.kinds.causal_lm.kind:CAUSAL_LM",
    expert_format_version=2,
    has_labels=False,
    generates=True,
    data_formats=".txt (blank lines between documents) or JSONL with a text field",
    tolerance_help="the least relative fall in held-out perplexity an expert must bring to "
    "its own domain, and the largest relative rise it may cause on any other (0.02: 2 %)",
    metric_digits=3,
    has_anchor=True,
    # Language-model work is heavier: its own queue, which GPU workers take while CPU
    # workers keep classification flowing.
    queue="lm",
    routing_sections=(("lm", LMRouting, "Language model"),),
    gate_defaults={"top_k": 1},
)
