"""The demo: two mixtures over the packaged data, demo accounts, and demo experts trained
and uploaded as a contributor would (what `manage.py seed_demo` runs). Idempotent."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from routing.basemodels import DEFAULT_BASE_MODEL, DEFAULT_LM_BASE
from routing.data import PACKAGED, Split, load_domain

from ..models import Domain, Expert, Mixture, Task
from .basemodels import register_base_model
from .domains import import_domain_data
from .mixtures import clean_routing
from .uploads import LocalFile, UploadRequest, accept_upload

DEMO_USERS = {
    "maintainer": ("demo-maintainer", "maintainer@example.org", True),
    "contributor": ("demo-contributor", "contributor@example.org", False),
}
LM_DOMAINS = ("bbc", "python")  # the language-model demo: news and code
LM_PER_DOMAIN = 80  # texts per domain for router + held-out: validation stays minutes on a CPU
LM_TRAIN = 32  # texts per demo language-model expert


def demo_users() -> dict:
    users = {}
    User = get_user_model()
    for role, (password, email, staff) in DEMO_USERS.items():
        user, created = User.objects.get_or_create(
            username=role, defaults={"email": email, "is_staff": staff}
        )
        if created:
            user.set_password(password)
            user.save()
        users[role] = user
    return users


def _mixture(slug, name, description, base, task_type, maintainer) -> Mixture:
    with transaction.atomic():
        mixture, _ = Mixture.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "description": description,
                "base_model": base,
                "task_type": task_type,
                "routing": clean_routing({}, task_type),
            },
        )
        mixture.maintainers.add(maintainer)
    return mixture


def classification_demo(maintainer, per_domain: int, say=print) -> Mixture:
    base = register_base_model(DEFAULT_BASE_MODEL, Task.CLASSIFICATION)
    mixture = _mixture(
        "news-and-reviews",
        "News and reviews",
        "Four text-classification domains: BBC News topics, Reuters finance newswire, "
        "20 Newsgroups forum topics and Rotten Tomatoes review sentiment. Train an expert "
        "for one of them.",
        base,
        Task.CLASSIFICATION,
        maintainer,
    )
    for name in PACKAGED:
        domain, _ = Domain.objects.get_or_create(mixture=mixture, name=name)
        if domain.router_count:
            continue
        data = load_domain(name)
        pool = Split(data.router.texts + data.eval.texts, data.router.labels + data.eval.labels)
        import_domain_data(domain, pool.limited(per_domain), source=f"packaged {name}")
        domain.description = PACKAGED[name][0]
        domain.save(update_fields=["description"])
        say(f"domain {name}: {domain.router_count} router, {domain.eval_count} eval examples")
    return mixture


def language_demo(maintainer, say=print) -> Mixture:
    from routing.kinds.causal_lm.corpora import CORPORA, load_corpus

    base = register_base_model(DEFAULT_LM_BASE, Task.CAUSAL_LM)
    mixture = _mixture(
        "news-and-code",
        "News and code (language model)",
        "A language-model mixture on SmolLM2-135M-Instruct: LoRA experts for BBC News "
        "articles and for Python source code. Each prompt is routed on its first 32 tokens "
        "to the expert for its domain; try it on a composition's page.",
        base,
        Task.CAUSAL_LM,
        maintainer,
    )
    for name in LM_DOMAINS:
        domain, _ = Domain.objects.get_or_create(mixture=mixture, name=name)
        if domain.router_count:
            continue
        corpus = load_corpus(name)
        pool = Split(corpus.router.texts + corpus.eval.texts).limited(LM_PER_DOMAIN)
        import_domain_data(domain, pool, source=f"packaged {name}")
        domain.description = CORPORA[name][0]
        domain.save(update_fields=["description"])
        say(f"domain {name}: {domain.router_count} router, {domain.eval_count} held-out texts")
    return mixture


_bases: dict = {}


def _loaded(cls, name: str):
    """A base model loaded once per process (the seeder trains in two rounds)."""
    if (cls, name) not in _bases:
        _bases[(cls, name)] = cls(name)
    return _bases[(cls, name)]


def _todo(mixture, contributor, names, limit=None) -> list[Domain]:
    todo = [
        d
        for d in mixture.domains.order_by("name")
        if d.name in names and not d.experts.filter(owner=contributor).exists()
    ]
    return todo[:limit]


def wait_for_first_composition(mixture, expert, say=print, timeout=900.0, poll=2.0) -> None:
    """Hold the next demo expert back until the worker has composed the mixture's first
    composition from `expert` (or judged it otherwise), so that on a small machine nothing
    competes with that first composition for the cores."""
    say(f"waiting for the worker to compose {mixture.slug} v1 before training more experts")
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if mixture.compositions.exists():
            say(f"{mixture.slug} v1 composed {time.monotonic() - started:.0f} s after the upload")
            return
        status = Expert.objects.filter(pk=expert.pk).values_list("status", flat=True).first()
        if status in (Expert.Status.REJECTED, Expert.Status.FAILED, None):
            say(f"{expert.name!r} was not accepted ({status}); going on")
            return
        time.sleep(poll)
    say(f"no {mixture.slug} composition after {timeout:.0f} s; going on")


def _upload(contributor, mixture, domain, path, name, description, enqueue):
    return accept_upload(
        contributor,
        UploadRequest(
            mixture=mixture,
            domain=domain,
            name=name,
            description=description,
            licence="apache-2.0",
            file=LocalFile(path),
        ),
        enqueue=enqueue,
    )


def classification_experts(
    mixture, contributor, train_limit: int, enqueue, say=print, limit=None
) -> list[Expert]:
    """Train and upload a head expert for each domain that has none from the contributor
    (the first `limit` of them); the experts uploaded."""
    from routing.cache import TensorCache
    from routing.kinds.classification.encoder import BaseEncoder
    from routing.kinds.classification.training import train_expert_file

    todo = _todo(mixture, contributor, PACKAGED, limit)
    if not todo:
        return []
    uploaded = []
    encoder = _loaded(BaseEncoder, DEFAULT_BASE_MODEL)
    cache = TensorCache(settings.MOECOLLAB_CACHE_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        for domain in todo:
            data = load_domain(domain.name).limited(train_limit)
            path = Path(tmp) / f"{domain.name}.safetensors"
            summary = train_expert_file(encoder, data, path, kind="head", cache=cache)
            expert = _upload(
                contributor,
                mixture,
                domain,
                path,
                f"demo {domain.name} head",
                f"A head expert trained on {len(data.train)} packaged "
                f"{domain.name} examples by `seed_demo --experts`.",
                enqueue,
            )
            say(
                f"expert {expert.name!r} uploaded for validation (trained in "
                f"{summary['train_seconds']:.1f} s, held-out accuracy "
                f"{summary['eval_accuracy']:.3f})"
            )
            uploaded.append(expert)
    return uploaded


def train_demo_lm_expert(base, domain: str, path: Path, texts: int | None = None) -> int:
    """A small LoRA (r=8 on q_proj and v_proj, 2 epochs) on a packaged corpus's first
    training texts, written as the project's single file. Returns how many texts."""
    from routing.kinds.causal_lm.corpora import load_corpus
    from routing.kinds.causal_lm.experts import save_lm_expert
    from routing.kinds.causal_lm.training import DEFAULT_TARGETS, train_lm_lora

    train = load_corpus(domain).train.limited(texts or LM_TRAIN).texts
    lora = train_lm_lora(base, train, r=8, alpha=16.0, epochs=2, lr=2e-3)
    save_lm_expert(
        path,
        lora_tensors=lora,
        r=8,
        alpha=16.0,
        target_modules=list(DEFAULT_TARGETS),
        base_model=base.name,
        base_fingerprint=base.weights_fingerprint,
        domain=domain,
    )
    return len(train)


def language_experts(mixture, contributor, enqueue, say=print, limit=None) -> list[Expert]:
    """Train and upload a small LoRA expert for each language-model domain without one
    (the first `limit` of them); the experts uploaded."""
    from routing.kinds.causal_lm.base import CausalBase

    todo = _todo(mixture, contributor, LM_DOMAINS, limit)
    if not todo:
        return []
    uploaded = []
    base = _loaded(CausalBase, mixture.base_model.name)
    with tempfile.TemporaryDirectory() as tmp:
        for domain in todo:
            path = Path(tmp) / f"{domain.name}.safetensors"
            n = train_demo_lm_expert(base, domain.name, path)
            expert = _upload(
                contributor,
                mixture,
                domain,
                path,
                f"demo {domain.name} lora",
                f"A LoRA (r=8, q_proj and v_proj) trained on {n} "
                f"packaged {domain.name} texts by `seed_demo --experts`.",
                enqueue,
            )
            say(f"expert {expert.name!r} uploaded for validation")
            uploaded.append(expert)
    return uploaded
