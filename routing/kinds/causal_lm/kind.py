"""Language-model mixtures: experts are LoRA adapters of a frozen causal LM, each trained
on its own domain's text; the router reads each prompt's prefix and the composition
generates with the experts it selects.

Light to import (no torch): the header check runs in web processes; the tensor code
is imported by the methods that need it, in workers and the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..interface import ExpertScore, MixtureKind
from .contract import check_lm_expert, check_token_modules
from .corpora import read_texts
from .info import INFO


class CausalLMKind(MixtureKind):
    info = INFO

    def read_examples(self, data: bytes, filename: str):
        return read_texts(data, filename)

    def load_base(self, name: str, *, revision: str | None = None, device=None, anchor=None,
                  anchor_config: dict | None = None):  # fmt: skip
        from .base import CausalBase

        return CausalBase(name, revision=revision or None, device=device, anchor=anchor,
                          anchor_config=anchor_config)  # fmt: skip

    def score_base(self, base, data: dict, cache, *, routing=None) -> dict[str, float]:
        """Held-out perplexity of every domain on `base` alone (no expert)."""
        from .composing import token_log_probs
        from .scoring import perplexity

        prefix = self.info.routing_configs(routing)["lm"].prefix_tokens
        return {
            name: perplexity(token_log_probs(None, base, domain.eval.texts, cache, prefix))
            for name, domain in data.items()
        }

    def score_anchor(self, base, anchored, data: dict, cache, *, routing=None) -> ExpertScore:
        """Held-out perplexity of every domain with the anchor merged against the base's: an
        anchor is for every expert of the mixture, so it may make no domain worse."""
        plain = self.score_base(base, data, cache, routing=routing)
        merged = self.score_base(anchored, data, cache, routing=routing)
        domains, problems = {}, []
        for name, domain in data.items():
            domains[name] = {"perplexity": merged[name], "base_perplexity": plain[name],
                             "eval_texts": len(domain.eval.texts)}  # fmt: skip
            if merged[name] > plain[name]:
                problems.append(
                    f"with the anchor, domain {name!r} rises from the base's perplexity "
                    f"{plain[name]:.3f} to {merged[name]:.3f}: an anchor may make no domain "
                    "worse (every expert builds on it); train it on broader public text, or "
                    "for less long"
                )
        mean = sum(d["perplexity"] for d in domains.values()) / max(len(domains), 1)
        return ExpertScore(
            {"domains": domains, "mean_perplexity": mean},
            problems,
            f"held-out perplexity on {len(domains)} domains, {len(problems)} worse than the base",
        )

    def anchor_peft_zip(self, path, *, base_model: str, adapter_config: dict | None) -> bytes:
        from .peft_form import peft_zip

        return peft_zip(path, base_model=base_model, adapter_config=adapter_config)

    def packaged_data(self) -> dict[str, str]:
        from .corpora import CORPORA

        return {name: description for name, (description, _) in CORPORA.items()}

    def load_packaged(self, name: str):
        from .corpora import load_corpus

        return load_corpus(name)

    def train_expert(self, base, data, path, *, cache, **options) -> dict:
        from .training import train_lm_expert_file

        return train_lm_expert_file(base, data, path, cache=cache, **options)

    def check_expert(
        self, path, *, base, labels=None, adapter_config=None, look_beside: bool = True,
        routing=None,
    ):  # fmt: skip
        header = check_lm_expert(
            path, base=base, adapter_config=adapter_config, look_beside=look_beside
        )
        if routing is not None and self.info.routing_configs(routing)["lm"].granularity == "token":
            check_token_modules(header.lora.modules)
        return header

    def load_expert(self, path, *, base, labels=None, adapter_config=None, name=None):
        from .experts import load_lm_expert

        return load_lm_expert(path, base=base, adapter_config=adapter_config, name=name)

    def score_expert(self, expert, base, data, cache, *, routing=None, tolerance=0.0):
        """Held-out perplexity of the domain's continuations against the base model's: the
        expert must lower it by at least the mixture's tolerance (relative)."""
        from .composing import token_log_probs
        from .scoring import perplexity

        prefix = self.info.routing_configs(routing)["lm"].prefix_tokens
        texts = data.eval.texts
        ppl = perplexity(token_log_probs(expert, base, texts, cache, prefix))
        base_ppl = perplexity(token_log_probs(None, base, texts, cache, prefix))
        gain = (base_ppl - ppl) / base_ppl if base_ppl else 0.0
        metrics = {
            "perplexity": ppl,
            "base_perplexity": base_ppl,
            "improvement": gain,
            "eval_texts": len(texts),
        }
        problems = []
        if gain < tolerance:
            problems.append(
                f"held-out perplexity {ppl:.3f} on {len(texts)} texts of the domain against "
                f"the base model's {base_ppl:.3f}: "
                + (f"{100 * gain:.2f} % lower" if gain >= 0 else f"{-100 * gain:.2f} % higher")
                + f", and the mixture asks for at least {100 * tolerance:.2f} % lower. Train "
                "on text like the domain's, for longer, or with a higher rank"
            )
        return ExpertScore(metrics, problems, f"held-out perplexity {ppl:.3f}")

    def compose(self, base, experts, expert_domains, data, *, cache, routing: dict, previous=None):
        from .composing import compose

        configs = self.info.routing_configs(routing)
        if configs["lm"].granularity == "token":
            from .token_composing import compose_tokens

            return compose_tokens(
                base, experts, expert_domains, {d: data[d] for d in set(expert_domains)},
                cache=cache, routing=configs["lm"], previous=previous,
            )  # fmt: skip
        if previous is not None and previous.granularity != "sequence":
            previous = None  # the settings changed granularity: no gate to start from
        return compose(
            base,
            experts,
            expert_domains,
            {d: data[d] for d in set(expert_domains)},
            cache=cache,
            gate_config=configs["gate"],
            train_config=configs["train"],
            routing=configs["lm"],
            previous=previous,
        )

    def contributions(self, composed) -> list[dict]:
        if composed.model.granularity == "token":
            from .token_composing import token_contributions

            return token_contributions(composed)
        from .composing import contributions

        return contributions(composed)

    def save_composition(self, model, folder) -> Path:
        return model.save(folder)

    def load_composition(self, folder: str | os.PathLike, base):
        from .token_model import load_composition

        return load_composition(folder, base=base)

    def export(self, model, folder, card) -> Path:
        if model.granularity == "token":
            from .mixtral_export import export_token_composition

            return export_token_composition(model, folder, card)
        from .export import export_lm_composition

        return export_lm_composition(model, folder, card)

    def light_base(self, model) -> tuple[str, str | None, str]:
        return model.base.name, model.base.revision, model.base.weights_fingerprint

    def light_usage(self, name: str) -> list[str]:
        return [
            f'python -m routing lm generate {name} "The government announced"  # loads the base',
            f"python -m routing lm export {name} --out {name}-hf  # the transformers folder",
        ]


CAUSAL_LM = CausalLMKind()
