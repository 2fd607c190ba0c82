"""Create the demo mixture over the packaged datasets, with demo accounts.

With `--experts`, also train a small head expert per domain (as a contributor
would, with the routing library) and upload it as the demo contributor, so
that the workers validate them and compose the demo's first compositions.

Idempotent: running it again changes nothing that exists.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from routing.basemodels import DEFAULT_BASE_MODEL, BaseSpec, resolve_base_model
from routing.data import PACKAGED, Split, load_domain

from ...models import BaseModel, Domain, Mixture
from ...services.domains import import_domain_data

DEMO_USERS = {
    "maintainer": ("demo-maintainer", "maintainer@example.org", True),
    "contributor": ("demo-contributor", "contributor@example.org", False),
}
PER_DOMAIN = 1200  # examples per domain kept for router + eval, so the demo stays quick
TRAIN_LIMIT = 600  # training (and scoring) examples per demo expert


class Command(BaseCommand):
    help = "Create the demo mixture, its four domains and the demo accounts"

    def add_arguments(self, parser):
        parser.add_argument("--per-domain", type=int, default=PER_DOMAIN)
        parser.add_argument(
            "--experts",
            action="store_true",
            help="also train and upload one head expert per domain as the demo contributor",
        )
        parser.add_argument("--train-limit", type=int, default=TRAIN_LIMIT)

    def handle(self, *args, per_domain: int, experts: bool, train_limit: int, **options):
        from transformers import AutoConfig

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
        config = AutoConfig.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL))
        spec = BaseSpec.from_config(DEFAULT_BASE_MODEL, config)
        base, _ = BaseModel.objects.get_or_create(
            name=DEFAULT_BASE_MODEL,
            defaults={
                "hidden_size": spec.hidden_size,
                "num_layers": spec.num_layers,
                "intermediate_size": spec.intermediate_size,
            },
        )
        with transaction.atomic():
            mixture, created = Mixture.objects.get_or_create(
                slug="news-and-reviews",
                defaults={
                    "name": "News and reviews",
                    "description": "Four text-classification domains: BBC News topics, "
                    "Reuters finance newswire, 20 Newsgroups forum topics and Rotten "
                    "Tomatoes review sentiment. Train an expert for one of them.",
                    "base_model": base,
                },
            )
            mixture.maintainers.add(users["maintainer"])
        for name in PACKAGED:
            domain, _ = Domain.objects.get_or_create(mixture=mixture, name=name)
            if domain.router_count:
                continue
            data = load_domain(name)
            pool = Split(data.router.texts + data.eval.texts, data.router.labels + data.eval.labels)
            import_domain_data(domain, pool.limited(per_domain), source=f"packaged {name}")
            domain.description = PACKAGED[name][0]
            domain.save(update_fields=["description"])
            self.stdout.write(
                f"domain {name}: {domain.router_count} router, "
                f"{domain.eval_count} eval examples, labels {domain.labels}"
            )
        if experts:
            self.seed_experts(mixture, users["contributor"], train_limit)
        self.stdout.write(
            self.style.SUCCESS(
                f"demo mixture {mixture.slug!r} ready; log in as maintainer / demo-maintainer or "
                "contributor / demo-contributor"
            )
        )

    def seed_experts(self, mixture, contributor, train_limit: int) -> None:
        """Train and upload a head expert for each domain that has none from the contributor."""
        import tempfile
        from pathlib import Path

        from django.conf import settings

        from routing.cache import TensorCache
        from routing.kinds.classification.encoder import BaseEncoder
        from routing.kinds.classification.training import train_expert_file

        from ...services.uploads import LocalFile, UploadRequest, accept_upload
        from ...tasks_api import enqueue_validation

        todo = [
            d
            for d in mixture.domains.order_by("name")
            if d.name in PACKAGED and not d.experts.filter(owner=contributor).exists()
        ]
        if not todo:
            return
        encoder = BaseEncoder(DEFAULT_BASE_MODEL)
        cache = TensorCache(settings.MOECOLLAB_CACHE_DIR)
        with tempfile.TemporaryDirectory() as tmp:
            for domain in todo:
                data = load_domain(domain.name).limited(train_limit)
                path = Path(tmp) / f"{domain.name}.safetensors"
                summary = train_expert_file(encoder, data, path, kind="head", cache=cache)
                expert = accept_upload(
                    contributor,
                    UploadRequest(
                        mixture=mixture,
                        domain=domain,
                        name=f"demo {domain.name} head",
                        description=f"A head expert trained on {len(data.train)} packaged "
                        f"{domain.name} examples by `seed_demo --experts`.",
                        licence="apache-2.0",
                        file=LocalFile(path),
                    ),
                    enqueue=enqueue_validation,
                )
                self.stdout.write(
                    f"expert {expert.name!r} uploaded for validation "
                    f"(trained in {summary['train_seconds']:.1f} s, "
                    f"held-out accuracy {summary['eval_accuracy']:.3f})"
                )
