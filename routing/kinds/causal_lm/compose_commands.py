"""What the language-model composition commands of `python -m routing lm` do: compose,
evaluate, generate, export (per sequence or per token)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ...light import open_composition
from .commands import _base, _routing, print_report


def _expert_specs(specs: list[str]):
    return [(path, corpus or None) for path, _, corpus in (s.partition("=") for s in specs)]


def cmd_compose(args) -> int:
    from ...cache import TensorCache
    from ...config import GateConfig, TrainConfig
    from .composing import compose
    from .corpora import load_corpus
    from .experts import load_lm_expert

    base = _base(args)
    experts, domains, data, corpora = [], [], {}, {}
    for path, corpus in _expert_specs(args.experts):
        expert = load_lm_expert(path, base=base.spec)
        corpus = corpus or expert.header.domain
        if not corpus:
            print(f"{path}: declares no domain; write it as {path}=CORPUS", file=sys.stderr)
            return 2
        domain = load_corpus(corpus).limited(args.limit)
        data.setdefault(domain.name, domain)
        corpora[domain.name] = corpus
        experts.append(expert)
        domains.append(domain.name)
    routing, cache = _routing(args), TensorCache(args.cache)
    if routing.granularity == "token":
        from .token_composing import compose_tokens

        shared = None
        if args.shared_corpus:
            shared = load_corpus(args.shared_corpus).router.limited(args.limit).texts
        composed = compose_tokens(base, experts, domains, data, cache=cache, routing=routing,
                                  shared_texts=shared, progress=True)  # fmt: skip
        how = f"per token, top-{routing.token_top_k} of the shared expert and {len(experts)}"
        how += " experts" + (", router tuned" if routing.tune_router else "")
    else:
        composed = compose(
            base, experts, domains, data, cache=cache, routing=routing,
            gate_config=GateConfig(top_k=args.top_k or 1, hidden=args.gate_hidden),
            train_config=TrainConfig(seed=args.seed), progress=True,
        )  # fmt: skip
        how = f"{args.router} router, top-{args.top_k or 1} of {len(experts)} experts, "
        how += args.mixing
    model = composed.model
    model.info.update(corpora=corpora, limit=args.limit)
    model.save(args.out)
    print(f"wrote {args.out} ({how})\n")
    print_report(composed.report, model.names if routing.granularity == "token" else
                 [e.name for e in experts])  # fmt: skip
    if args.against:
        print_against(args, composed.report, data, cache)
    return 0


def print_against(args, report: dict, data: dict, cache) -> None:
    """The composition beside one more adapter (trained on the base without the anchor: a
    multitask LoRA on every corpus, the single model a mixture is measured against), on
    the same held-out texts."""
    from ...tables import table
    from .base import CausalBase
    from .composing import token_log_probs
    from .experts import load_lm_expert
    from .scoring import perplexity

    plain = CausalBase(args.base, device=args.device, max_tokens=args.max_tokens)
    other = load_lm_expert(args.against, base=plain.spec)
    rows, wins = [], 0
    for domain, m in report["domains"].items():
        theirs = perplexity(token_log_probs(other, plain, data[domain].eval.texts, cache,
                                            args.prefix_tokens))  # fmt: skip
        wins += m["perplexity"] < theirs
        rows.append([domain, f"{m['perplexity']:.3f}", f"{theirs:.3f}",
                     f"{m['base_perplexity']:.3f}"])  # fmt: skip
    print(f"\nagainst {args.against} (on the base without the anchor):")
    print(table(rows, ["domain", "composition", Path(args.against).name, "base (anchored)"]))
    print(f"the composition is lower on {wins} of {len(rows)} domains")


def cmd_evaluate(args) -> int:
    from ...cache import TensorCache
    from ...config import LMRouting
    from .composing import cached_split
    from .corpora import load_corpus
    from .scoring import evaluate_weights
    from .token_model import load_composition

    model = open_composition(args.folder, lambda f: load_composition(f, device=args.device))
    corpora = model.info.get("corpora", {})
    limit = args.limit if args.limit is not None else model.info.get("limit")
    data = {d: load_corpus(corpora.get(d, d), name=d).limited(limit) for d in model.domains}
    token = model.granularity == "token"
    routing = LMRouting(prefix_tokens=model.prefix_tokens) if token else model.routing
    split = cached_split(model.experts, model.expert_domains, data, "eval", model.base,
                         TensorCache(args.cache), routing, progress=True)  # fmt: skip
    if token:
        from .token_composing import evaluate_tokens

        report, names = evaluate_tokens(model, data, split), model.names
    else:
        report = evaluate_weights(model.cached_weights(split, args.top_k), split, model.experts)
        names = [e.name for e in model.experts]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, names)
        if args.against:
            print_against(args, report, data, TensorCache(args.cache))
    return 0


def cmd_generate(args) -> int:
    from .model import MoECausalLM
    from .token_model import load_composition

    prompts = args.prompts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if Path(args.folder).is_file() and Path(args.folder).suffix != ".zip":  # one expert
        from .experts import load_lm_expert

        base = _base(args)
        expert = load_lm_expert(args.folder, base=base.spec)
        model = MoECausalLM.of_one(base, expert, _routing(args))
    else:  # a composition folder, the hub's zip of one, or a light export
        model = open_composition(args.folder, lambda f: load_composition(f, device=args.device))
    outputs = model.generate(
        prompts, max_new_tokens=args.max_new_tokens, do_sample=args.sample,
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, top_k=args.top_k,
    )  # fmt: skip
    for out in outputs:
        chosen = ", ".join(f"{name} {weight:.2f}" for name, weight in out.experts)
        print(f"[{chosen}] {out.prompt}{out.text}")
        if out.tokens:  # per token: each generated token's top expert
            print("  tokens: " + " ".join(out.tokens))
    return 0


def cmd_export(args) -> int:
    from ...model_card import CardInfo
    from .kind import CAUSAL_LM
    from .token_model import load_composition

    model = open_composition(args.folder, lambda f: load_composition(f, device="cpu"))
    name = Path(args.folder).name.removesuffix(".zip")
    card = CardInfo(title=args.title or name, repo_id=args.repo_id or "", mixture=name,
                    base_licence=args.base_licence)  # fmt: skip
    out = CAUSAL_LM.export(model, args.out, card)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB); it runs in three lines:\n")
    print(loading_snippet(str(out), remote_code=model.granularity != "token"))
    return 0


def loading_snippet(folder: str, *, remote_code: bool = True) -> str:
    """How to run an export. A per-sequence export's model and tokenizer are loaded with
    `trust_remote_code=True`: transformers reads the model's config before the tokenizer's,
    and without it asks "Do you wish to run the custom code?" even for the tokenizer; a
    per-token export is a Mixtral checkpoint and needs no remote code."""
    remote = ", trust_remote_code=True" if remote_code else ""
    return (
        "from transformers import pipeline\n\n"
        f'generate = pipeline("text-generation", model={folder!r}{remote})\n'
        'print(generate("The government announced", max_new_tokens=40)[0]["generated_text"])'
    )
