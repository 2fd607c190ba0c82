"""Export, publish and load a MiniLM composition: time, size and prediction agreement.

Builds a composition on the packaged all-MiniLM-L6-v2 with one head and one
LoRA expert (random weights: the timings do not depend on what they learned)
and a top-2 gate, then:

1. exports it as a Hugging Face model folder (`routing.export`),
2. publishes it with the real `huggingface_hub` client to the Hub-compatible
   test server on 127.0.0.1 (create repo, LFS upload, commit, tag),
3. re-publishes it (nothing changed: no second commit),
4. downloads it with `snapshot_download`, loads it with
   `AutoModelForSequenceClassification(..., trust_remote_code=True)`,
5. compares its probabilities with the hub's own composition on 50 texts
   from the packaged datasets, and times both.

    .venv/bin/python bench/publish.py [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # the local server speaks LFS


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    from huggingface_hub import HfApi, snapshot_download
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from devtools.experts import make_head_file, make_lora_file
    from devtools.hubserver import HubServer
    from routing.config import GateConfig
    from routing.data import load_domain
    from routing.gate import Gate
    from routing.kinds.classification.encoder import BaseEncoder
    from routing.kinds.classification.experts import load_expert
    from routing.kinds.classification.export import export_composition
    from routing.kinds.classification.model import MoEClassifier
    from routing.model_card import CardInfo

    torch.set_num_threads(args.threads)
    texts = []
    for name in ("bbc", "reuters8", "20news", "rotten"):
        texts += load_domain(name).eval.texts[:13]
    texts = texts[:50]
    encoder = BaseEncoder(device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="moecollab-publish-"))
    files = [
        make_head_file(tmp / "news.safetensors", encoder, ["business", "sport", "tech"], "news"),
        make_lora_file(tmp / "films.safetensors", encoder, ["fresh", "rotten"], "films", r=8),
    ]
    experts = [load_expert(p, base=encoder.spec) for p in files]
    torch.manual_seed(0)
    gate = Gate(encoder.hidden_size, 2, GateConfig(top_k=2, hidden=64))
    hub_model = MoEClassifier(encoder, experts, ["news", "films"], gate)
    print(f"{args.threads} CPU threads, torch {torch.__version__}, base {encoder.name}")

    started = time.perf_counter()
    folder = export_composition(hub_model, tmp / "export", CardInfo(title="bench", repo_id="b/m"))
    export_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"export: {export_s:.2f} s, {size / 1e6:.1f} MB in {len(list(folder.iterdir()))} files")

    server = HubServer(tokens={"bench-token": "b"}).start()
    api = HfApi(endpoint=server.url, token="bench-token")
    started = time.perf_counter()
    api.create_repo("b/m", exist_ok=True)
    info = api.upload_folder(repo_id="b/m", folder_path=folder, commit_message="v1")
    api.create_tag("b/m", tag="v1", revision=info.oid)
    publish_s = time.perf_counter() - started
    started = time.perf_counter()
    again = api.upload_folder(repo_id="b/m", folder_path=folder, commit_message="v1 again")
    republish_s = time.perf_counter() - started
    commits = len(server.commits("b/m")) - 1  # without the repository's initial commit
    print(
        f"publish to the local Hub-compatible server: {publish_s:.2f} s; "
        f"re-publish: {republish_s:.2f} s, same commit {again.oid == info.oid}, "
        f"{commits} commit(s)"
    )

    started = time.perf_counter()
    local = snapshot_download("b/m", revision="v1", endpoint=server.url, cache_dir=tmp / "hf")
    model = AutoModelForSequenceClassification.from_pretrained(local, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(local, trust_remote_code=True)
    load_s = time.perf_counter() - started
    server.stop()

    started = time.perf_counter()
    want, _ = hub_model.predict_proba(texts)
    hub_s = time.perf_counter() - started
    started = time.perf_counter()
    with torch.no_grad():
        out = model.eval()(**tokenizer(texts, padding=True, return_tensors="pt"))
    hf_s = time.perf_counter() - started
    got = out.logits.softmax(-1)
    same = int((got.argmax(-1) == want.argmax(-1)).sum())
    per_text = sorted(set((out.router_weights > 0).sum(-1).tolist()))
    print(f"download + load with transformers: {load_s:.2f} s")
    print(
        f"50 texts: max |p_transformers - p_hub| = {float((got - want).abs().max()):.2e}, "
        f"same label {same}/50, experts per text {per_text}; "
        f"hub {hub_s:.2f} s (length-sorted batches), transformers {hf_s:.2f} s (one padded batch)"
    )


if __name__ == "__main__":
    main()
