"""The demo: two mixtures over the packaged data, demo accounts, and demo experts trained
and uploaded as a contributor would (what `manage.py seed_demo` runs). Idempotent.

The seeder is the one place outside `routing.kinds` that names kinds: each demo is a
mixture of one kind, trained with that kind's own recipe (`MixtureKind.train_expert`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from routing.basemodels import DEFAULT_BASE_MODEL, DEFAULT_LM_BASE
from routing.data import Split
from routing.kinds import get_kind

from ..models import Domain, Expert, Mixture
from .basemodels import register_base_model
from .domains import import_domain_data
from .mixtures import clean_routing
from .resources import loaded_base
from .uploads import LocalFile, UploadRequest, accept_upload

DEMO_USERS = {
    "maintainer": ("demo-maintainer", "maintainer@example.org", True),
    "contributor": ("demo-contributor", "contributor@example.org", False),
}
LM_DOMAINS = ("bbc", "python")  # the language-model demo: news and code
LM_PER_DOMAIN = 80  # texts per domain for router + held-out: validation stays minutes on a CPU
LM_TRAIN = 32  # texts per demo language-model expert


@dataclass
class Demo:
    """A demo mixture: its kind, base, packaged domains and how its experts are trained."""

    slug: str
    name: str
    description: str
    kind: str
    base: str
    domains: tuple[str, ...]
    per_domain: int  # router + held-out examples per domain
    train: int  # training examples per demo expert
    expert: str  # the experts' names: "demo <domain> <expert>"
    options: dict = field(default_factory=dict)  # the kind's training settings
    about: str = ""  # the experts' description, after "trained on N packaged <domain> "


def news_and_reviews(per_domain: int, train: int) -> Demo:
    kind = get_kind("classification")
    return Demo(
        "news-and-reviews",
        "News and reviews",
        "Four text-classification domains: BBC News topics, Reuters finance newswire, "
        "20 Newsgroups forum topics and Rotten Tomatoes review sentiment. Train an expert "
        "for one of them.",
        kind.info.name,
        DEFAULT_BASE_MODEL,
        tuple(kind.packaged_data()),
        per_domain,
        train,
        "head",
        {"architecture": "head"},
        "examples",
    )


def news_and_code() -> Demo:
    return Demo(
        "news-and-code",
        "News and code (language model)",
        "A language-model mixture on SmolLM2-135M-Instruct: LoRA experts for BBC News "
        "articles and for Python source code. Each prompt is routed on its first 32 tokens "
        "to the expert for its domain; try it on a composition's page.",
        "causal-lm",
        DEFAULT_LM_BASE,
        LM_DOMAINS,
        LM_PER_DOMAIN,
        LM_TRAIN,
        "lora",
        # A small LoRA: r=8 on q_proj and v_proj, 2 epochs, not evaluated before upload.
        {"r": 8, "alpha": 16.0, "epochs": 2, "lr": 2e-3, "evaluate": False},
        "texts",
    )


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


def seed_mixture(demo: Demo, maintainer, say=print) -> Mixture:
    """The demo's mixture with its domains and their packaged data (kept when present)."""
    kind = get_kind(demo.kind)
    base = register_base_model(demo.base, demo.kind)
    with transaction.atomic():
        mixture, _ = Mixture.objects.get_or_create(
            slug=demo.slug,
            defaults={
                "name": demo.name,
                "description": demo.description,
                "base_model": base,
                "kind": demo.kind,
                "routing": clean_routing({}, demo.kind),
            },
        )
        mixture.maintainers.add(maintainer)
    about = kind.packaged_data()
    for name in demo.domains:
        domain, _ = Domain.objects.get_or_create(mixture=mixture, name=name)
        if domain.router_count:
            continue
        data = kind.load_packaged(name)
        pool = Split(data.router.texts + data.eval.texts, data.router.labels + data.eval.labels)
        import_domain_data(domain, pool.limited(demo.per_domain), source=f"packaged {name}")
        domain.description = about[name]
        domain.save(update_fields=["description"])
        say(f"domain {name}: {domain.router_count} router, {domain.eval_count} held-out examples")
    return mixture


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


def _upload(contributor, mixture, domain, path, name, description):
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
    )


def train_experts(demo: Demo, mixture, contributor, say=print, limit=None) -> list[Expert]:
    """Train and upload an expert for each demo domain that has none from the contributor
    (the first `limit` of them), with the kind's own recipe; the experts uploaded (each
    with its validation job)."""
    from routing.cache import TensorCache  # torch: the seeder trains in its own process

    todo = _todo(mixture, contributor, demo.domains, limit)
    if not todo:
        return []
    kind = get_kind(demo.kind)
    base = loaded_base(demo.kind, mixture.base_model.name, mixture.base_model.revision)
    cache = TensorCache(settings.MOECOLLAB_CACHE_DIR)
    uploaded = []
    with tempfile.TemporaryDirectory() as tmp:
        for domain in todo:
            data = kind.load_packaged(domain.name).limited(demo.train)
            path = Path(tmp) / f"{domain.name}.safetensors"
            summary = kind.train_expert(base, data, path, cache=cache, **demo.options)
            expert = _upload(
                contributor,
                mixture,
                domain,
                path,
                f"demo {domain.name} {demo.expert}",
                f"A {demo.expert} expert trained on {len(data.train)} packaged "
                f"{domain.name} {demo.about} by `seed_demo --experts`.",
            )
            said = f"trained in {summary['train_seconds']:.1f} s"
            if "eval_accuracy" in summary:
                said += f", held-out accuracy {summary['eval_accuracy']:.3f}"
            say(f"expert {expert.name!r} uploaded for validation ({said})")
            uploaded.append(expert)
    return uploaded
