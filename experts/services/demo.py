"""The demo: two mixtures over the packaged data, demo accounts, and demo experts trained
and uploaded as a contributor would (what `manage.py seed_demo` runs). Idempotent.

The seeder is the one place outside `routing.kinds` that names kinds: each demo is a
mixture of one kind, trained with that kind's own recipe (`MixtureKind.train_expert`).
"""

from __future__ import annotations

import random
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
from routing.splits import DomainData

from ..models import Anchor, Domain, Expert, Mixture
from .anchors import accept_anchor
from .basemodels import register_base_model
from .domains import import_domain_data
from .mixtures import clean_routing
from .resources import base_for, loaded_base
from .uploads import LocalFile, UploadRequest, accept_upload

DEMO_USERS = {
    "maintainer": ("demo-maintainer", "maintainer@example.org", True),
    "contributor": ("demo-contributor", "contributor@example.org", False),
}
LM_DOMAINS = ("bbc", "python")  # the language-model demo: news and code
LM_PER_DOMAIN = 64  # texts per domain for router + held-out: validation stays minutes on a CPU
LM_TRAIN = 32  # texts per demo language-model expert
LM_ANCHOR = 48  # public texts of the demo's anchor, a third from each of ANCHOR_CORPORA
# Public text none of the demo's domains holds: speeches, forum posts and film reviews (an
# anchor of speeches alone made BBC News a little worse, which the hub refuses).
ANCHOR_CORPORA = ("speeches", "20news", "rotten")


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
    routing: dict = field(default_factory=dict)  # the mixture's routing settings
    anchor: dict | None = None  # {"corpus", "texts", "options"}: the maintainer's anchor


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
        "A per-token language-model mixture on SmolLM2-135M-Instruct with an anchor trained "
        "on public text: MLP LoRA experts for BBC News articles and for Python source "
        "code, each trained on the base with the anchor merged. Every token of a prompt goes "
        "to the experts its router picks in each layer; try it on a composition's page.",
        "causal-lm",
        DEFAULT_LM_BASE,
        LM_DOMAINS,
        LM_PER_DOMAIN,
        LM_TRAIN,
        "lora",
        # A small LoRA on the MLP (r=8, 2 epochs) trained on base + anchor.
        {"r": 8, "alpha": 16.0, "epochs": 2, "lr": 2e-3, "evaluate": False},
        "texts",
        routing={"lm": {"granularity": "token"}},
        # The maintainer's anchor: r=8 on every linear layer, one epoch of public text.
        anchor={
            "corpora": ANCHOR_CORPORA,
            "texts": LM_ANCHOR,
            "options": {
                "r": 8,
                "alpha": 16.0,
                "epochs": 1,
                "lr": 2e-3,
                "evaluate": False,
                "role": "anchor",
                "target_modules": (
                    "q_proj",
                    "k_proj",
                    "v_proj",
                    "o_proj",
                    "gate_proj",
                    "up_proj",
                    "down_proj",
                ),
            },
        },  # fmt: skip
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
                "routing": clean_routing(demo.routing, demo.kind),
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


def upload_anchor(demo: Demo, mixture, maintainer, say=print) -> Anchor | None:
    """Train the demo's anchor on its packaged public corpus and upload it as its
    maintainer would; the anchor awaiting its verdict (None: the mixture needs none, has
    one, or has experts and is frozen)."""
    if demo.anchor is None or mixture.anchor_id or mixture.experts.exists():
        return None
    pending = mixture.anchors.filter(status__in=Anchor.ACTIVE).first()
    if pending is not None:
        return pending
    kind = get_kind(demo.kind)
    base = loaded_base(demo.kind, mixture.base_model.name, mixture.base_model.revision)
    corpora = demo.anchor["corpora"]
    each = demo.anchor["texts"] // len(corpora)
    texts = [t for c in corpora for t in kind.load_packaged(c).train.texts[:each]]
    random.Random(0).shuffle(texts)
    data = DomainData("public", [], Split(texts), Split([]), Split([]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "anchor.safetensors"
        summary = kind.train_expert(base, data, path, cache=None, **demo.anchor["options"])
        name = f"demo anchor: {len(texts)} packaged texts of {', '.join(corpora)}"
        pending = accept_anchor(maintainer, mixture, LocalFile(path), name=name)
    seconds = summary["train_seconds"]
    say(f"anchor trained on {len(texts)} texts of {', '.join(corpora)} in {seconds:.1f} s")
    return pending


def seed_anchor(demo: Demo, mixture, maintainer, say=print, wait=None) -> None:
    """Give the demo mixture its anchor (`upload_anchor`) and wait for the worker's verdict
    (`wait_for_anchor`, or `wait(mixture, anchor, say)`): its experts train on it."""
    pending = upload_anchor(demo, mixture, maintainer, say)
    if pending is None:
        return
    (wait or wait_for_anchor)(mixture, pending, say)
    mixture.refresh_from_db()
    if not mixture.anchor_id:
        pending.refresh_from_db()
        verdict = pending.report.get("summary", "no verdict")
        say(f"the anchor was not accepted ({pending.status}: {verdict}); experts go on the base")


def wait_for_anchor(mixture, anchor, say=print, timeout=900.0, poll=2.0) -> None:
    """Wait for the worker's verdict on the demo's anchor (the experts train on it)."""
    say(f"waiting for the worker to validate {mixture.slug}'s anchor")
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if Anchor.objects.filter(pk=anchor.pk).exclude(status__in=Anchor.ACTIVE).exists():
            say(f"the anchor was judged {time.monotonic() - started:.0f} s after the upload")
            return
        time.sleep(poll)
    say(f"no verdict on the anchor after {timeout:.0f} s; going on")


def train_experts(demo: Demo, mixture, contributor, say=print, limit=None) -> list[Expert]:
    """Train and upload an expert for each demo domain that has none from the contributor
    (the first `limit` of them), with the kind's own recipe on the mixture's base (with its
    anchor merged); the experts uploaded (each with its validation job)."""
    from routing.cache import TensorCache  # torch: the seeder trains in its own process

    todo = _todo(mixture, contributor, demo.domains, limit)
    if not todo:
        return []
    kind = get_kind(demo.kind)
    seed_anchor(demo, mixture, mixture.maintainers.order_by("pk").first(), say)
    base = base_for(mixture)
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
