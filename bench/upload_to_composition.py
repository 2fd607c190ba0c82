"""Time from upload to a new composition on a demo mixture, step by step, on the CPU.

Runs the hub's own services in this process (SQLite in a temporary folder,
no broker): the upload service, then the validation and retraining that a
worker runs, twice. For the classification demo (`--kind classification`): a
BBC `head` expert, then a Rotten Tomatoes one. For the language-model demo
(`--kind causal-lm`, on SmolLM2, per token with an anchor): the maintainer's anchor
first (trained, uploaded and validated once per mixture, timed apart), then a BBC LoRA
expert and a Python one, each trained as the demo's are (on the MLP, coordinated with
the anchor). It prints each step's seconds and the cache's hits
and misses, which show that base features and outputs are computed once.

    .venv/bin/python bench/upload_to_composition.py [--kind causal-lm] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kind", choices=("classification", "causal-lm"), default="classification")
    parser.add_argument(
        "--train",
        type=int,
        help="training examples per expert (default: 600; a language model: the demo's 32)",
    )
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="moecollab-bench-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "hub.settings",
            "MOECOLLAB_VAR_DIR": str(tmp),
            "HF_HUB_OFFLINE": "1",
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
        }
    )
    os.environ.pop("REDIS_URL", None)
    import django
    import torch

    torch.set_num_threads(args.threads)
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from experts.models import Job, Mixture
    from experts.services import compositions, resources, validation
    from experts.services.uploads import LocalFile, UploadRequest, accept_upload

    call_command("migrate", verbosity=0)
    call_command("seed_demo", verbosity=0, no_language_model=args.kind == "classification")
    slug = "news-and-reviews" if args.kind == "classification" else "news-and-code"
    mixture = Mixture.objects.get(slug=slug)
    user = User.objects.get(username="contributor")
    print(
        f"{args.threads} CPU threads, torch {torch.__version__}; demo mixture {slug} with "
        f"{mixture.domains.count()} domains"
    )
    if args.kind == "causal-lm":  # the maintainer's side, once per mixture: the anchor
        maintainer = User.objects.get(username="maintainer")
        demo_anchor(mixture, maintainer)
    # The contributor's side (not timed as the hub's work): train two experts.
    if args.kind == "classification":
        files = classification_experts(tmp, args.train or 600)
    else:
        files = language_experts(tmp, mixture, args.train or 32)

    cache = resources.tensor_cache()
    for name, path in files.items():
        steps = []
        last = [time.perf_counter()]

        def mark(label, steps=steps, last=last):
            now = time.perf_counter()
            steps.append((label, now - last[0]))
            last[0] = now

        hits, misses = cache.hits, cache.misses
        expert = accept_upload(
            user,
            UploadRequest(
                mixture=mixture,
                domain=mixture.domains.get(name=name),
                name=f"{name} {'head' if args.kind == 'classification' else 'lora'}",
                description="",
                licence="apache-2.0",
                file=LocalFile(path),
            ),
        )
        mark("upload: quota, size, contract header, sha256, store")
        job = expert.jobs.get(action=Job.Action.VALIDATE)  # queued with the upload
        real_progress = validation.progress
        pending = ["validation: claim the job and the expert"]

        def timed_progress(job_, percent, message, mark=mark, real=real_progress, p=pending):
            mark(p[0])  # the step that just ended
            p[0] = f"validation: {message}"
            real(job_, percent, message)

        validation.progress = timed_progress
        validation.validate(job.pk)
        mark(pending[0])
        validation.progress = real_progress
        retrain = Job.objects.get(mixture=mixture, action=Job.Action.RETRAIN, status="queued")
        composition = compositions.retrain(retrain.pk)
        mark("retrain: gate, contributions, composition stored")
        expert.refresh_from_db()
        total = sum(s for _, s in steps)
        print(
            f"\n{name}: expert {expert.status}, composition v{composition.version}, "
            f"{total:.1f} s from upload to composition"
        )
        for label, seconds in steps:
            print(f"  {seconds:7.2f} s  {label}")
        print(
            f"  feature and output cache: {cache.hits - hits} hits, {cache.misses - misses} "
            "misses (in the validating process)"
        )


def classification_experts(tmp: Path, train: int) -> dict[str, Path]:
    from routing.cache import TensorCache
    from routing.data import load_domain
    from routing.kinds.classification.encoder import BaseEncoder
    from routing.kinds.classification.training import train_expert_file

    files = {}
    encoder = BaseEncoder(device="cpu")
    for name in ("bbc", "rotten"):
        data = load_domain(name)
        data.train, data.eval = data.train.limited(train), data.eval.limited(50)
        files[name] = tmp / f"{name}.safetensors"
        train_expert_file(encoder, data, files[name], cache=TensorCache(tmp / "contributor"))
    return files


def demo_anchor(mixture, maintainer) -> None:
    """The demo's anchor, trained and uploaded as the seeder does, validated here as a
    worker would; prints each part's seconds."""
    from experts.services import anchors, demo

    started = time.perf_counter()

    def validate_here(mixture, anchor, say):
        uploaded = time.perf_counter()
        print(f"(maintainer) anchor trained and uploaded in {uploaded - started:.0f} s")
        anchors.validate_anchor(anchor.jobs.get().pk)
        anchor.refresh_from_db()
        seconds, verdict = time.perf_counter() - uploaded, anchor.report.get("summary", "")
        print(f"anchor {anchor.status} after {seconds:.1f} s of validation (the hub's work, "
              f"once per mixture): {verdict}")  # fmt: skip

    demo.seed_anchor(demo.news_and_code(), mixture, maintainer, say=lambda m: None,
                     wait=validate_here)  # fmt: skip
    mixture.refresh_from_db()


def language_experts(tmp: Path, mixture, train: int) -> dict[str, Path]:
    """LoRA experts for the language-model demo's two domains, trained as the demo's are
    (on the mixture's base with its anchor merged)."""
    from experts.services.demo import news_and_code
    from experts.services.resources import base_for
    from routing.cache import TensorCache
    from routing.kinds import get_kind

    demo = news_and_code()
    kind = get_kind(demo.kind)
    base = base_for(mixture)
    files = {}
    for name in demo.domains:
        started = time.perf_counter()
        files[name] = tmp / f"{name}.safetensors"
        data = kind.load_packaged(name).limited(train)
        cache = TensorCache(tmp / "contributor")
        n = kind.train_expert(base, data, files[name], cache=cache, **demo.options)["train_texts"]
        print(f"(contributor) trained the {name} expert on {n} texts in "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return files


if __name__ == "__main__":
    main()
