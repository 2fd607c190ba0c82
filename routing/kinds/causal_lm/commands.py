"""What the language-model commands of `python -m routing lm` do (cli.py parses them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ...tables import table


def _base(args):
    from .base import CausalBase

    return CausalBase(args.base, device=args.device, max_tokens=args.max_tokens)


def _routing(args):
    from ...config import LMRouting

    return LMRouting(
        prefix_tokens=args.prefix_tokens,
        layer=getattr(args, "layer", -1),
        router=getattr(args, "router", "learned"),
        mixing=getattr(args, "mixing", "mix"),
    )


def print_report(report: dict, names: list[str]) -> None:
    from ...report import matrix_rows

    rows = []
    for domain, m in report["domains"].items():
        best = min(m["experts"]) if m["experts"] else float("nan")
        rows.append([domain, m["n"], m["tokens"], f"{m['perplexity']:.3f}",
                     f"{m['base_perplexity']:.3f}", f"{best:.3f}"])  # fmt: skip
    o = report["overall"]
    rows.append(["overall", o["n"], o["tokens"], f"{o['perplexity']:.3f}",
                 f"{o['base_perplexity']:.3f}", ""])  # fmt: skip
    header = ["domain", "texts", "tokens", "perplexity", "base", "best expert alone"]
    print(table(rows, header))
    print(f"\nrouting accuracy {o['routing_accuracy']:.3f}")
    u = report["utilisation"]
    loads = [[n, f"{x:.3f}"] for n, x in zip(names, u["load"], strict=True)]
    print(table(loads, ["expert", "load"]))
    print(f"normalised load entropy {u['entropy']:.3f}; experts under 1 % load: {u['under_1pct']}")
    print("\nrouting matrix (rows: domains, columns: experts)")
    matrix = [
        [d] + [f"{x:.3f}" for x in row]
        for d, row in zip(matrix_rows(report), report["routing_matrix"], strict=True)
    ]
    print(table(matrix, ["domain"] + names))


def cmd_datasets(args) -> int:
    from .corpora import CORPORA, load_corpus

    rows = []
    for name, (description, _) in CORPORA.items():
        d = load_corpus(name)
        rows.append([name, len(d.train), len(d.router), len(d.eval), description])
    print(table(rows, ["name", "train", "router", "eval", "description"]))
    return 0


def cmd_train(args) -> int:
    from ...cache import TensorCache
    from .corpora import load_corpus
    from .training import train_lm_expert_file

    data = load_corpus(args.corpus, name=args.domain)
    total = len(data.train) + len(data.router) + len(data.eval)
    data.train, data.eval = data.train.limited(args.limit), data.eval.limited(args.eval_limit)
    print(
        f"training on {len(data.train)} of the {total} texts of {args.corpus} "
        f"(at most {args.max_tokens} tokens each); held-out perplexity on {len(data.eval)} "
        f"texts after their first {args.prefix_tokens} tokens"
    )
    base = _base(args)
    summary = train_lm_expert_file(
        base,
        data,
        args.out,
        cache=TensorCache(args.cache),
        prefix_tokens=args.prefix_tokens,
        r=args.rank,
        target_modules=tuple(args.target_modules.split(",")),
        seed=args.seed,
        progress=True,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
    )
    print(
        f"wrote {args.out}: expert for {summary['domain']!r}, {summary['parameters']:,} "
        f"parameters, trained on {summary['train_texts']} texts in "
        f"{summary['train_seconds']:.1f} s; held-out perplexity "
        f"{summary['eval_perplexity']:.3f} (base model {summary['base_perplexity']:.3f})"
    )
    return 0


def cmd_check(args) -> int:
    from ...basemodels import BaseSpec
    from ...files import check_finite
    from ...safetensors_header import ContractError
    from .contract import check_lm_expert

    spec = BaseSpec.read(args.base)
    try:
        header = check_lm_expert(args.file, base=spec, adapter_config=args.adapter_config)
        check_finite(args.file)
    except ContractError as exc:
        print(f"REJECTED ({exc.code}): {exc}", file=sys.stderr)
        return 1
    lora = header.lora
    print(f"OK: language-model expert ({header.source} format) for base {header.base_model!r}")
    print(f"domain: {header.domain or '(not declared)'}; {header.num_parameters:,} parameters")
    print(f"LoRA r={lora.r} alpha={lora.alpha:g} on {len(lora.modules)} modules "
          f"({', '.join(lora.target_modules)})")  # fmt: skip
    return 0


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
    composed = compose(
        base, experts, domains, data, cache=TensorCache(args.cache), routing=_routing(args),
        gate_config=GateConfig(top_k=args.top_k, hidden=args.gate_hidden),
        train_config=TrainConfig(seed=args.seed), progress=True,
    )  # fmt: skip
    model = composed.model
    model.info.update(corpora=corpora, limit=args.limit)
    model.save(args.out)
    print(f"wrote {args.out} ({args.router} router, top-{args.top_k} of {len(experts)} "
          f"experts, {args.mixing})\n")  # fmt: skip
    print_report(composed.report, [e.name for e in experts])
    return 0


def cmd_evaluate(args) -> int:
    from ...cache import TensorCache
    from .composing import cached_split
    from .corpora import load_corpus
    from .model import MoECausalLM
    from .scoring import evaluate_weights

    model = MoECausalLM.load(args.folder, device=args.device)
    corpora = model.info.get("corpora", {})
    limit = args.limit if args.limit is not None else model.info.get("limit")
    data = {d: load_corpus(corpora.get(d, d), name=d).limited(limit) for d in model.domains}
    split = cached_split(model.experts, model.expert_domains, data, "eval", model.base,
                         TensorCache(args.cache), model.routing, progress=True)  # fmt: skip
    report = evaluate_weights(model.cached_weights(split, args.top_k), split, model.experts)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, [e.name for e in model.experts])
    return 0


def cmd_generate(args) -> int:
    from .model import MoECausalLM

    prompts = args.prompts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if Path(args.folder).is_file():  # one expert: a composition of it alone
        from .experts import load_lm_expert

        base = _base(args)
        expert = load_lm_expert(args.folder, base=base.spec)
        model = MoECausalLM.of_one(base, expert, _routing(args))
    else:
        model = MoECausalLM.load(args.folder, device=args.device)
    outputs = model.generate(
        prompts, max_new_tokens=args.max_new_tokens, do_sample=args.sample,
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, top_k=args.top_k,
    )  # fmt: skip
    for out in outputs:
        chosen = ", ".join(f"{name} {weight:.2f}" for name, weight in out.experts)
        print(f"[{chosen}] {out.prompt}{out.text}")
    return 0


def cmd_export(args) -> int:
    from ...model_card import CardInfo
    from .export import export_lm_composition
    from .model import MoECausalLM

    model = MoECausalLM.load(args.folder, device="cpu")
    card = CardInfo(title=args.title or Path(args.folder).name, repo_id=args.repo_id or "",
                    mixture=Path(args.folder).name, base_licence=args.base_licence)  # fmt: skip
    out = export_lm_composition(model, args.out, card)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB); it runs in three lines:\n")
    print(loading_snippet(str(out)))
    return 0


def loading_snippet(folder: str) -> str:
    """How to run an export. Both the model and its tokenizer are loaded with
    `trust_remote_code=True`: transformers reads the model's config before the tokenizer's,
    and without it asks "Do you wish to run the custom code?" even for the tokenizer."""
    return (
        "from transformers import pipeline\n\n"
        f'generate = pipeline("text-generation", model={folder!r}, trust_remote_code=True)\n'
        'print(generate("The government announced", max_new_tokens=40)[0]["generated_text"])'
    )
