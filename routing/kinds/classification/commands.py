"""What the classification commands of `python -m routing` do (cli.py parses them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ...light import open_composition, unpacked
from ...tables import table


def _encoder(args):
    from .encoder import BaseEncoder

    return BaseEncoder(args.base, device=args.device, max_length=args.max_length)


def print_report(report: dict, expert_names: list[str]) -> None:
    from ...report import matrix_rows

    rows = [
        [name, m["n"], f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}"]
        for name, m in report["domains"].items()
    ]
    o = report["overall"]
    rows.append(["overall", o["n"], f"{o['accuracy']:.4f}", f"{o['macro_f1']:.4f}"])
    print(table(rows, ["domain", "examples", "accuracy", "macro-F1"]))
    u = report["utilisation"]
    print()
    loads = [[n, f"{x:.3f}"] for n, x in zip(expert_names, u["load"], strict=True)]
    print(table(loads, ["expert", "load"]))
    print(f"normalised load entropy {u['entropy']:.3f}; experts under 1 % load: {u['under_1pct']}")
    print()
    print("routing matrix (rows: domains, columns: experts)")
    matrix = [
        [d] + [f"{x:.3f}" for x in row]
        for d, row in zip(matrix_rows(report), report["routing_matrix"], strict=True)
    ]
    print(table(matrix, ["domain"] + expert_names))


def cmd_train(args) -> int:
    from ...cache import TensorCache
    from ...data import Split, load_domain
    from .training import train_expert_file

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
    if args.architecture == "head":
        options["hidden"] = args.hidden
    else:
        options.update(r=args.rank, target_modules=tuple(args.target_modules.split(",")))
    summary = train_expert_file(
        encoder,
        data,
        args.out,
        architecture=args.architecture,
        cache=TensorCache(args.cache),
        seed=args.seed,
        progress=True,
        **options,
    )
    print(
        f"wrote {args.out}: {summary['architecture']} expert for domain {summary['domain']!r}, "
        f"{summary['parameters']:,} parameters, trained on {summary['train_examples']} examples "
        f"in {summary['train_seconds']:.1f} s; "
        + ("accuracy on trained-on texts" if args.all_data else "held-out accuracy")
        + f" {summary['eval_accuracy']:.4f} on {summary['eval_examples']} examples"
    )
    return 0


def cmd_check(args) -> int:
    from transformers import AutoConfig

    from ...basemodels import BaseSpec, resolve_base_model
    from ...data import load_domain
    from ...files import check_finite
    from ...safetensors_header import ContractError
    from .contract import check_expert_file

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
    print(
        f"OK: {header.architecture} expert ({header.source} format), "
        f"base model {header.base_model!r}"
    )
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
    from ...cache import TensorCache
    from ...config import ClassifierRouting, GateConfig, TrainConfig
    from ...data import load_domain
    from .composing import compose
    from .contract import check_expert_file
    from .experts import load_expert

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
    routing = ClassifierRouting(
        gate_features=args.gate_features,
        read_experts=not args.no_read_experts,
        calibrate=not args.no_calibrate,
        balance_domains=not args.no_balance,
    )
    composed = compose(
        encoder,
        experts,
        domains,
        data,
        cache=TensorCache(args.cache),
        gate_config=gate_config,
        train_config=train_config,
        routing=routing,
        progress=True,
    )
    model = composed.model
    model.info["datasets"] = specs
    model.info["limit"] = args.limit
    model.save(args.out)
    print(
        f"wrote {args.out} (top-{args.top_k} of {len(experts)} experts, gate trained in "
        f"{model.info['gate_seconds']:.2f} s)\n"
    )
    print_report(composed.report, [e.name for e in experts])
    return 0


def cmd_evaluate(args) -> int:
    from ...cache import TensorCache
    from ...data import load_domain
    from .composing import cached_split, evaluate_cached
    from .model import MoEClassifier

    composition = MoEClassifier.load(args.folder, device=args.device)
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
        gate_features=composition.gate_features,
    )
    report = evaluate_cached(composition, split, args.top_k)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, [e.name for e in composition.experts])
    return 0


def cmd_predict(args) -> int:
    from .export import is_exported, predict_exported
    from .model import MoEClassifier

    texts = args.texts or [line.strip() for line in sys.stdin if line.strip()]
    folder = Path(args.folder)
    if folder.suffix == ".zip":  # the hub's download, as it came (full or light)
        folder = unpacked(folder)
    if is_exported(folder):  # the unzipped download, or a Hub snapshot
        from ...tensors import pick_device

        device = args.device or pick_device()
        predictions = predict_exported(folder, texts, top_k=args.top_k, device=device)
        for text, p in zip(texts, predictions, strict=True):
            print(f"{p['label']}\t{p['score']:.3f}\t{p['domain']}\t{text[:70]}")
        return 0
    if folder.is_file():  # a single expert file
        from .experts import load_expert

        encoder = _encoder(args)
        expert = load_expert(args.folder, base=encoder.spec)
        composition = MoEClassifier.of_one(encoder, expert)
    else:  # a composition folder or a light export (its base checked)
        composition = open_composition(folder, lambda f: MoEClassifier.load(f, device=args.device))
    for text, p in zip(texts, composition.predict(texts, top_k=args.top_k), strict=True):
        print(f"{p['label']}\t{p['score']:.3f}\t{p['domain']}\t{text[:70]}")
    return 0


def cmd_export(args) -> int:
    from ...model_card import CardInfo
    from .export import export_composition
    from .model import MoEClassifier

    composition = open_composition(args.folder, lambda f: MoEClassifier.load(f, device="cpu"))
    name = Path(args.folder).name.removesuffix(".zip")
    card = CardInfo(
        title=args.title or name,
        repo_id=args.repo_id or "",
        mixture=name,
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
