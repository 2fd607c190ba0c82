"""Create the demo mixtures over the packaged data, with demo accounts.

- News and reviews: four text-classification domains on all-MiniLM-L6-v2.
- News and code: a language-model mixture on SmolLM2-135M-Instruct (BBC News, Python).

With `--experts`, also train a small expert per domain (as a contributor would, with
the routing library) and upload it as the demo contributor, so that the workers
validate them and compose the demos' first compositions. With `--first-compositions-first`
(what `./run start` does) it uploads one expert per mixture (the language model's after
its anchor is accepted) and waits for the worker to compose it before training the
others, so that a small machine shows each demo's first composition as soon as it can.

Idempotent: running it again changes nothing that exists.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ...services import demo

PER_DOMAIN = 1200  # examples per domain kept for router + eval, so the demo stays quick
TRAIN_LIMIT = 600  # training (and scoring) examples per demo classification expert


class Command(BaseCommand):
    help = "Create the demo mixtures, their domains and the demo accounts"

    def add_arguments(self, parser):
        parser.add_argument("--per-domain", type=int, default=PER_DOMAIN)
        parser.add_argument(
            "--experts",
            action="store_true",
            help="also train and upload one expert per domain as the demo contributor",
        )
        parser.add_argument("--train-limit", type=int, default=TRAIN_LIMIT)
        parser.add_argument(
            "--first-compositions-first",
            action="store_true",
            help="after each mixture's first expert, wait for its composition before "
            "training the others (a worker must be running)",
        )
        parser.add_argument(
            "--no-language-model",
            action="store_true",
            help="leave out the language-model demo (its experts take minutes on a CPU)",
        )

    def handle(self, *args, per_domain, experts, train_limit, no_language_model, **options):
        users = demo.demo_users()
        say = self.stdout.write
        demos = [demo.news_and_reviews(per_domain, train_limit)]
        if not no_language_model:
            demos.append(demo.news_and_code())
        mixtures = [demo.seed_mixture(d, users["maintainer"], say) for d in demos]
        if experts:
            contributor = users["contributor"]
            steps = [
                (mixture, lambda limit, d=d, m=mixture: demo.train_experts(
                    d, m, contributor, say, limit=limit))
                for d, mixture in zip(demos, mixtures, strict=True)
            ]  # fmt: skip
            if options["first_compositions_first"]:
                for mixture, step in steps:
                    first = step(1)
                    if first and not mixture.compositions.exists():
                        demo.wait_for_first_composition(mixture, first[0], say)
            for _, step in steps:
                step(None)
        self.stdout.write(
            self.style.SUCCESS(
                "demo mixtures ready; log in as maintainer / demo-maintainer or "
                "contributor / demo-contributor"
            )
        )
