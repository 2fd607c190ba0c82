"""Every page and API list costs a fixed number of SQL queries, however many experts,
jobs and compositions a mixture has (bench/pages.py times them with 1,000 experts)."""

import pytest
from django.contrib.auth.models import User

from bench.pages import pages, query_count, seed
from experts.models import BaseModel, Mixture


def queries_per_page(n_experts: int, n_compositions: int) -> dict[str, int]:
    world = seed(n_experts, n_compositions)
    counts = {name: query_count(path, user)[0] for name, path, user in pages(world)}
    Mixture.objects.all().delete()
    BaseModel.objects.all().delete()
    User.objects.all().delete()
    return counts


@pytest.mark.django_db
def test_pages_cost_the_same_queries_for_12_and_240_experts():
    small = queries_per_page(12, 3)
    big = queries_per_page(240, 12)
    assert big == small
    assert max(big.values()) <= 16
