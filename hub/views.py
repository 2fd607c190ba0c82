"""Site pages that belong to no single app."""

from django.shortcuts import render

from experts.models import Domain
from experts.views import mixture_list
from routing.base import DEFAULT_BASE_MODEL
from routing.contract import FORMAT_VERSION
from routing.data import PACKAGED

HOME_DOMAINS = 24


def home(request):
    datasets = [{"name": name, "description": desc} for name, (desc, _) in PACKAGED.items()]
    return render(
        request,
        "home.html",
        {
            "mixtures": mixture_list(request),
            "domains": Domain.objects.select_related("mixture").order_by("mixture__name", "name")[
                :HOME_DOMAINS
            ],
            "datasets": datasets,
            "base_model": DEFAULT_BASE_MODEL,
            "format_version": FORMAT_VERSION,
        },
    )
