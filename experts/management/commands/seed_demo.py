"""Create the demo mixture over the packaged datasets, with demo accounts.

Idempotent: running it again changes nothing that exists.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from routing.base import DEFAULT_BASE_MODEL, BaseSpec, resolve_base_model
from routing.data import PACKAGED, Split, load_domain

from ...models import BaseModel, Domain, Mixture
from ...services.domains import import_domain_data

DEMO_USERS = {
    "maintainer": ("demo-maintainer", "maintainer@example.org", True),
    "contributor": ("demo-contributor", "contributor@example.org", False),
}
PER_DOMAIN = 1200  # examples per domain kept for router + eval, so the demo stays quick


class Command(BaseCommand):
    help = "Create the demo mixture, its four domains and the demo accounts"

    def add_arguments(self, parser):
        parser.add_argument("--per-domain", type=int, default=PER_DOMAIN)

    def handle(self, *args, per_domain: int, **options):
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
        self.stdout.write(
            self.style.SUCCESS(
                f"demo mixture {mixture.slug!r} ready; log in as maintainer / demo-maintainer or "
                "contributor / demo-contributor"
            )
        )
