"""What the language-model commands of `python -m routing lm` do: the corpora, training an
anchor or an expert, checking a file (compose_commands.py: the compositions)."""

from __future__ import annotations

import sys

from ...tables import table


def _base(args, *, anchor: bool = True):
    """The base the command runs on, with `--anchor` merged unless it trains the anchor."""
    from .base import CausalBase

    merged = getattr(args, "anchor", None) if anchor else None
    return CausalBase(args.base, device=args.device, max_tokens=args.max_tokens, anchor=merged)


def _routing(args):
    from ...config import LMRouting

    token = getattr(args, "granularity", "sequence") == "token"
    top_k = getattr(args, "top_k", None)
    return LMRouting(
        prefix_tokens=args.prefix_tokens,
        layer=getattr(args, "layer", -1),
        router=getattr(args, "router", "learned"),
        mixing=getattr(args, "mixing", "mix"),
        granularity="token" if token else "sequence",
        token_top_k=(top_k or 2) if token else LMRouting.token_top_k,
        token_temperature=getattr(args, "token_temperature", LMRouting.token_temperature),
        tune_router=getattr(args, "tune_router", False),
        tune_steps=getattr(args, "tune_steps", LMRouting.tune_steps),
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
    if args.hub:
        return _train_for_hub(args)
    targets = tuple(args.target_modules.split(","))
    if args.coordinated and not set(targets) <= {"gate_proj", "up_proj", "down_proj"}:
        print(
            "error: a coordinated expert is LoRA on the MLP (gate_proj, up_proj, down_proj); "
            "leave out --coordinated to train other modules alone",
            file=sys.stderr,
        )
        return 2
    return _train(args, targets=targets, role="expert", coordinated=args.coordinated)


def cmd_anchor(args) -> int:
    if args.anchor:
        print("error: an anchor is trained on the plain base: leave out --anchor", file=sys.stderr)
        return 2
    args.domain = None
    return _train(args, targets=tuple(args.target_modules.split(",")), role="anchor",
                  coordinated=False)  # fmt: skip


def _train(args, *, targets, role: str, coordinated: bool) -> int:
    from ...cache import TensorCache
    from .training import train_lm_expert_file

    data, total = corpora_union(args.corpus.split(","), args.limit, args.eval_limit, args.domain)
    base = _base(args, anchor=role == "expert")
    how = "beside the shared expert" if coordinated else "alone"
    on = f"the base with the anchor {base.spec.anchor[:12]}... merged" if base.spec.anchor else (
        "the base"
    )  # fmt: skip
    what = "an anchor" if role == "anchor" else f"an expert {how}"
    print(
        f"training on {len(data.train)} of the {total} texts of {args.corpus} (at most "
        f"{args.max_tokens} tokens each), {what} on {on}; held-out perplexity on "
        f"{len(data.eval)} texts after their first {args.prefix_tokens} tokens"
    )
    summary = train_lm_expert_file(
        base,
        data,
        args.out,
        cache=TensorCache(args.cache),
        prefix_tokens=args.prefix_tokens,
        r=args.rank,
        target_modules=targets,
        seed=args.seed,
        progress=True,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        coordinated=coordinated,
        role=role,
    )
    print(
        f"wrote {args.out}: {role} for {summary['domain']!r}, {summary['parameters']:,} "
        f"parameters, trained on {summary['train_texts']} texts in "
        f"{summary['train_seconds']:.1f} s; held-out perplexity "
        f"{summary['eval_perplexity']:.3f} (base model {summary['base_perplexity']:.3f})"
    )
    return 0


def _train_for_hub(args) -> int:
    """Train the way a hub's mixture composes: its base, its anchor (downloaded, checked
    by sha256), modules it allows; check the file against it; upload it with --upload."""
    from pathlib import Path

    from ...basemodels import BaseSpec
    from ...safetensors_header import ContractError
    from . import hub_client
    from .contract import check_lm_expert, check_token_modules
    from .layout import MLP_PROJECTIONS

    if not (args.mixture and args.domain):
        raise SystemExit("--hub needs --mixture and --domain")
    if args.upload and not args.token:
        raise SystemExit("--upload needs your API token: --token, or $MOECOLLAB_TOKEN "
                         "(your profile page on the hub makes one)")  # fmt: skip
    record = hub_client.mixture(args.hub, args.mixture, args.domain)
    contract = record["contract"]
    args.base = record["base_model"]
    targets = tuple(args.target_modules.split(","))
    outside = sorted(set(targets) - set(contract["target_modules"]))
    if outside:
        raise SystemExit(f"mixture {args.mixture!r} takes LoRA on {contract['target_modules']} "
                         f"only, not {outside}: leave out --target-modules")  # fmt: skip
    if args.rank > contract["max_rank"]:
        raise SystemExit(f"the mixture takes ranks up to {contract['max_rank']}")
    sha = contract.get("anchor_sha256")
    folder = Path(args.cache or Path.home() / ".cache" / "moecollab") / "anchors"
    args.anchor = hub_client.anchor_file(args.hub, args.mixture, sha, folder) if sha else None
    print(f"mixture {args.mixture!r} on {args.hub}: base {args.base!r}, "
          + (f"anchor {sha[:16]}... (downloaded, sha256 checked)" if sha else "no anchor")
          + f", {contract['granularity']} routing")  # fmt: skip
    if args.coordinated and not set(targets) <= set(MLP_PROJECTIONS):
        raise SystemExit("a coordinated expert is LoRA on the MLP (gate_proj, up_proj, "
                         "down_proj): leave out --coordinated or --target-modules")  # fmt: skip
    status = _train(args, targets=targets, role="expert", coordinated=args.coordinated)
    if status:
        return status
    spec = BaseSpec.read(args.base)
    import dataclasses

    spec = dataclasses.replace(spec, anchor=sha or "")
    try:
        header = check_lm_expert(args.out, base=spec)
        if contract["granularity"] == "token":
            check_token_modules(header.lora.modules)
    except ContractError as exc:
        print(f"REJECTED ({exc.code}): {exc}", file=sys.stderr)
        return 1
    print(f"OK: {args.out} meets mixture {args.mixture!r}'s contract")
    if not args.upload:
        print("upload it with --upload --token TOKEN, or on the mixture's page")
        return 0
    name = args.name or f"{args.domain} expert"
    expert = hub_client.upload(args.hub, args.token, slug=args.mixture, domain=args.domain,
                               name=name, path=args.out)  # fmt: skip
    print(f"uploaded as expert #{expert['id']}: {args.hub.rstrip('/')}/experts/{expert['id']}/")
    expert = hub_client.follow(args.hub, args.token, expert["id"])
    print(f"{expert['status']}: {(expert.get('report') or {}).get('summary', '')}")
    for problem in (expert.get("report") or {}).get("problems", []):
        print(f"  - {problem}")
    return 0 if expert["status"] == "accepted" else 1


def corpora_union(names: list[str], limit: int, eval_limit: int, name: str | None = None):
    """(one corpus, or the union of several: a multitask adapter's data, each limited to
    `limit` training and `eval_limit` held-out texts; how many texts they had)."""
    from ...splits import DomainData, Split
    from .corpora import load_corpus

    parts = [load_corpus(corpus) for corpus in names]
    total = sum(len(p.train) + len(p.router) + len(p.eval) for p in parts)
    joined = DomainData(
        name or (parts[0].name if len(parts) == 1 else "+".join(names)),
        [],
        Split([t for p in parts for t in p.train.limited(limit).texts]),
        Split([t for p in parts for t in p.router.texts]),
        Split([t for p in parts for t in p.eval.limited(eval_limit).texts]),
    )
    return joined, total


def cmd_check(args) -> int:
    from ...basemodels import BaseSpec
    from ...files import check_finite
    from ...safetensors_header import ContractError
    from .contract import check_lm_expert

    spec = BaseSpec.read(args.base)
    if args.anchor:  # the anchor the expert must name, without loading any weights
        import dataclasses

        from ...files import file_sha256

        spec = dataclasses.replace(spec, anchor=file_sha256(args.anchor))
    try:
        header = check_lm_expert(args.file, base=spec, adapter_config=args.adapter_config)
        check_finite(args.file)
    except ContractError as exc:
        print(f"REJECTED ({exc.code}): {exc}", file=sys.stderr)
        return 1
    lora = header.lora
    print(
        f"OK: language-model {header.role} ({header.source} format) for base "
        f"{header.base_model!r}" + (f", anchor {header.anchor[:12]}..." if header.anchor else "")
    )
    print(f"domain: {header.domain or '(not declared)'}; {header.num_parameters:,} parameters")
    print(f"LoRA r={lora.r} alpha={lora.alpha:g} on {len(lora.modules)} modules "
          f"({', '.join(lora.target_modules)})")  # fmt: skip
    return 0
