"""Command line: python -m routing {datasets,train,check,compose,evaluate,predict,export}."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _encoder(args):
    from .base import BaseEncoder

    return BaseEncoder(args.base, device=args.device, max_length=args.max_length)


def _table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_report(report: dict, expert_names: list[str]) -> None:
    from .metrics import matrix_rows

    rows = [
        [name, m["n"], f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}"]
        for name, m in report["domains"].items()
    ]
    o = report["overall"]
    rows.append(["overall", o["n"], f"{o['accuracy']:.4f}", f"{o['macro_f1']:.4f}"])
    print(_table(rows, ["domain", "examples", "accuracy", "macro-F1"]))
    u = report["utilisation"]
    print()
    loads = [[n, f"{x:.3f}"] for n, x in zip(expert_names, u["load"], strict=True)]
    print(_table(loads, ["expert", "load"]))
    print(f"normalised load entropy {u['entropy']:.3f}; experts under 1 % load: {u['under_1pct']}")
    print()
    print("routing matrix (rows: domains, columns: experts)")
    matrix = [
        [d] + [f"{x:.3f}" for x in row]
        for d, row in zip(matrix_rows(report), report["routing_matrix"], strict=True)
    ]
    print(_table(matrix, ["domain"] + expert_names))


def cmd_datasets(args) -> int:
    from .data import PACKAGED, load_domain

    rows = []
    for name, (description, _) in PACKAGED.items():
        d = load_domain(name)
        rows.append([name, len(d.labels), len(d.train), len(d.router), len(d.eval), description])
    print(_table(rows, ["name", "labels", "train", "router", "eval", "description"]))
    return 0


def cmd_train(args) -> int:
    from .cache import TensorCache
    from .data import Split, load_domain
    from .workflow import train_expert_file

    data = load_domain(args.dataset, name=args.domain)
    total = len(data.train) + len(data.router) + len(data.eval)
    if args.all_data:
        parts = (data.train, data.router, data.eval)
        data.train = Split(
            [t for p in parts for t in p.texts], [y for p in parts for y in p.labels]
        )
    data.train = data.train.limited(args.limit)
    data.eval = data.eval.limited(args.limit)
    if args.all_data:
        print(
            f"training on {len(data.train)} of the {total} examples of {args.dataset} "
            "(--all-data): the accuracy below is on texts the expert trained on, not held out"
        )
    else:
        print(
            f"training on {len(data.train)} of the {total} examples of {args.dataset} "
            f"({len(data.train) / max(total, 1):.0%}); {len(data.router)} are kept as router "
            f"data and {len(data.eval)} held out to measure the expert (the hub's own split); "
            "--all-data trains on every example"
        )
    encoder = _encoder(args)
    options = {"epochs": args.epochs} if args.epochs else {}
    if args.kind == "head":
        options["hidden"] = args.hidden
    else:
        options.update(r=args.rank, target_modules=tuple(args.target_modules.split(",")))
    summary = train_expert_file(
        encoder,
        data,
        args.out,
        kind=args.kind,
        cache=TensorCache(args.cache),
        seed=args.seed,
        progress=True,
        **options,
    )
    print(
        f"wrote {args.out}: {summary['kind']} expert for domain {summary['domain']!r}, "
        f"{summary['parameters']:,} parameters, trained on {summary['train_examples']} examples "
        f"in {summary['train_seconds']:.1f} s; "
        + ("accuracy on trained-on texts" if args.all_data else "held-out accuracy")
        + f" {summary['eval_accuracy']:.4f} on {summary['eval_examples']} examples"
    )
    return 0


def cmd_check(args) -> int:
    from transformers import AutoConfig

    from .base import BaseSpec, resolve_base_model
    from .contract import check_expert_file, check_finite
    from .data import load_domain
    from .safetensors_header import ContractError

    base_name, labels = args.base, None
    if args.hub and not (args.mixture and args.domain):
        raise SystemExit("--hub needs --mixture and --domain")
    if args.hub:
        base_name, labels = _hub_domain(args.hub, args.mixture, args.domain)
        print(f"checking against {args.hub}: mixture {args.mixture!r}, domain {args.domain!r}")
    elif args.labels_from:
        labels = load_domain(args.labels_from).labels
    base = BaseSpec.from_config(
        base_name, AutoConfig.from_pretrained(resolve_base_model(base_name))
    )
    try:
        header = check_expert_file(
            args.file, base=base, labels=labels, adapter_config=args.adapter_config
        )
        check_finite(args.file)
    except ContractError as exc:
        print(f"REJECTED ({exc.code}): {exc}", file=sys.stderr)
        return 1
    print(f"OK: {header.kind} expert ({header.source} format), base model {header.base_model!r}")
    print(
        f"domain: {header.domain or '(not declared)'}; {len(header.labels)} labels: "
        f"{', '.join(header.labels)}"
    )
    print(f"{header.num_parameters:,} parameters")
    if header.lora:
        print(
            f"LoRA r={header.lora.r} alpha={header.lora.alpha} on "
            f"{len(header.lora.modules)} modules ({', '.join(header.lora.target_modules)})"
        )
    return 0


def _hub_domain(hub: str, mixture: str, domain: str) -> tuple[str, list[str]]:
    """(base model, labels in their documented order) of a domain on a hub, from its API."""
    import urllib.error
    import urllib.parse
    import urllib.request

    url = f"{hub.rstrip('/')}/api/mixtures/{urllib.parse.quote(mixture)}/"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url} answered {exc.code}: is {mixture!r} a mixture there?") from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read {url}: {exc}") from None
    domains = {d["name"]: d for d in data.get("domains", [])}
    if domain not in domains:
        raise SystemExit(f"mixture {mixture!r} has no domain {domain!r}; it has {sorted(domains)}")
    return data["base_model"], list(domains[domain]["labels"])


def _expert_args(specs: list[str]):
    """'file.safetensors[=DATASET]' -> (path, dataset spec or None)."""
    out = []
    for spec in specs:
        path, _, dataset = spec.partition("=")
        out.append((path, dataset or None))
    return out


def cmd_compose(args) -> int:
    from .cache import TensorCache
    from .config import GateConfig, TrainConfig
    from .contract import check_expert_file
    from .data import load_domain
    from .experts import load_expert
    from .workflow import compose

    encoder = _encoder(args)
    experts, domains, data = [], [], {}
    specs = {}
    for path, dataset in _expert_args(args.experts):
        header = check_expert_file(path, base=encoder.spec)
        dataset = dataset or header.domain
        if not dataset:
            print(f"{path}: declares no domain; write it as {path}=DATASET", file=sys.stderr)
            return 2
        domain = load_domain(dataset).limited(args.limit)
        data.setdefault(domain.name, domain)
        specs[domain.name] = dataset
        experts.append(load_expert(path, base=encoder.spec, labels=domain.labels))
        domains.append(domain.name)
    gate_config = GateConfig(top_k=args.top_k, hidden=args.gate_hidden)
    train_config = TrainConfig(epochs=args.epochs, seed=args.seed)
    composition, report = compose(
        encoder,
        experts,
        domains,
        data,
        cache=TensorCache(args.cache),
        gate_config=gate_config,
        train_config=train_config,
        progress=True,
    )
    composition.info["datasets"] = specs
    composition.info["limit"] = args.limit
    composition.save(args.out)
    print(
        f"wrote {args.out} (top-{args.top_k} of {len(experts)} experts, gate trained in "
        f"{composition.info['gate_seconds']:.2f} s)\n"
    )
    print_report(report, [e.name for e in experts])
    return 0


def cmd_evaluate(args) -> int:
    from .cache import TensorCache
    from .compose import Composition
    from .data import load_domain
    from .workflow import cached_split, evaluate_cached

    composition = Composition.load(args.folder, device=args.device)
    specs = dict(composition.info.get("datasets", {}))
    for item in args.data or []:
        domain, _, spec = item.partition("=")
        specs[domain] = spec
    limit = args.limit if args.limit is not None else composition.info.get("limit")
    data = {}
    for domain in composition.domains:
        data[domain] = load_domain(specs.get(domain, domain), name=domain).limited(limit)
    split = cached_split(
        composition.experts,
        composition.expert_domains,
        data,
        "eval",
        composition.encoder,
        TensorCache(args.cache),
        progress=True,
    )
    report = evaluate_cached(composition, split, args.top_k)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, [e.name for e in composition.experts])
    return 0


def _unzipped(path: Path) -> Path:
    """The model folder inside a composition zip downloaded from the hub."""
    import tempfile
    import zipfile

    target = Path(tempfile.mkdtemp(prefix="moecollab-"))
    with zipfile.ZipFile(path) as archive:
        archive.extractall(target)
    configs = sorted(target.rglob("config.json"))
    if not configs:
        raise SystemExit(f"{path} holds no model folder (no config.json)")
    return configs[0].parent


def cmd_predict(args) -> int:
    from .compose import Composition
    from .export import is_exported, predict_exported

    texts = args.texts or [line.strip() for line in sys.stdin if line.strip()]
    folder = Path(args.folder)
    if folder.suffix == ".zip":  # the hub's download, as it came
        folder = _unzipped(folder)
    if is_exported(folder):  # the unzipped download, or a Hub snapshot
        from .base import pick_device

        device = args.device or pick_device()
        predictions = predict_exported(folder, texts, top_k=args.top_k, device=device)
        for text, p in zip(texts, predictions, strict=True):
            print(f"{p['label']}\t{p['score']:.3f}\t{p['domain']}\t{text[:70]}")
        return 0
    if folder.is_file():  # a single expert file
        from .experts import load_expert

        encoder = _encoder(args)
        expert = load_expert(args.folder, base=encoder.spec)
        composition = Composition.of_one(encoder, expert)
    else:
        composition = Composition.load(args.folder, device=args.device)
    for text, p in zip(texts, composition.predict(texts, top_k=args.top_k), strict=True):
        print(f"{p['label']}\t{p['score']:.3f}\t{p['domain']}\t{text[:70]}")
    return 0


def cmd_export(args) -> int:
    from .compose import Composition
    from .export import export_composition
    from .model_card import CardInfo

    composition = Composition.load(args.folder, device="cpu")
    card = CardInfo(
        title=args.title or Path(args.folder).name,
        repo_id=args.repo_id or "",
        mixture=Path(args.folder).name,
        base_licence=args.base_licence,
    )
    out = export_composition(composition, args.out, card)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {out} ({size / 1e6:.1f} MB): load it with")
    print(
        "  AutoModelForSequenceClassification.from_pretrained"
        f"({str(out)!r}, trust_remote_code=True)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .base import DEFAULT_BASE_MODEL, DEFAULT_MAX_LENGTH

    parser = argparse.ArgumentParser(prog="python -m routing", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base", default=DEFAULT_BASE_MODEL, help="base model: Hugging Face id or local folder"
    )
    common.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    common.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    common.add_argument(
        "--cache",
        default=None,
        help="feature cache folder (default: $MOECOLLAB_CACHE or ~/.cache/moecollab)",
    )
    common.add_argument("--seed", type=int, default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("datasets", help="list the packaged datasets and their splits")

    p = sub.add_parser("train", parents=[common], help="train an expert on one domain")
    p.add_argument("--dataset", required=True, help="packaged name or CSV/JSONL file")
    p.add_argument("--domain", help="domain name written into the file (default: dataset name)")
    p.add_argument("--kind", choices=("head", "lora"), default="head")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=int, help="at most this many training examples")
    p.add_argument(
        "--all-data",
        action="store_true",
        help="train on every example, not only the 70%% training part of the split",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--hidden", type=int, default=256, help="head: hidden width")
    p.add_argument("--rank", type=int, default=8, help="lora: rank")
    p.add_argument("--target-modules", default="query,value", help="lora: modules to adapt")

    p = sub.add_parser("check", parents=[common], help="check a file against the contract")
    p.add_argument("file")
    p.add_argument("--hub", help="a hub's address: check against one of its domains, as it will")
    p.add_argument("--mixture", help="with --hub: the mixture's slug")
    p.add_argument("--domain", help="with --hub: the domain's name")
    p.add_argument("--labels-from", help="dataset whose labels the expert must have")
    p.add_argument("--adapter-config", help="adapter_config.json of a PEFT adapter")

    p = sub.add_parser("compose", parents=[common], help="train a gate over experts")
    p.add_argument("experts", nargs="+", help="FILE[=DATASET] (default: the file's domain)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--gate-hidden", type=int, default=128)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--limit", type=int, help="at most this many examples per split")

    p = sub.add_parser("evaluate", parents=[common], help="score a composition per domain")
    p.add_argument("folder")
    p.add_argument("--top-k", type=int)
    p.add_argument("--limit", type=int)
    p.add_argument("--data", action="append", help="DOMAIN=DATASET to override a domain's data")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", parents=[common], help="classify texts (args or stdin)")
    p.add_argument("folder", help="a composition folder, or one expert file")
    p.add_argument("texts", nargs="*")
    p.add_argument("--top-k", type=int)

    p = sub.add_parser("export", help="write a composition as a Hugging Face model folder")
    p.add_argument("folder", help="a composition folder (from compose)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--repo-id", help="the Hub repository the model card's snippets name")
    p.add_argument("--title", help="the model card's title")
    p.add_argument("--base-licence", default="apache-2.0", help="licence of the base model")
    return parser


COMMANDS = {
    "datasets": cmd_datasets,
    "train": cmd_train,
    "check": cmd_check,
    "compose": cmd_compose,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "export": cmd_export,
}


def main(argv: list[str] | None = None) -> int:
    # The CLI works offline unless told otherwise (packaged model and datasets).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .data import DatasetError
    from .safetensors_header import ContractError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ContractError, DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
