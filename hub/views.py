"""Site pages that belong to no single app."""

from django.shortcuts import render

from experts.models import Domain
from experts.views.mixtures import mixture_list
from routing.basemodels import DEFAULT_BASE_MODEL
from routing.data import PACKAGED
from routing.kinds.classification.contract import EXPERT_FORMAT_VERSION

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
            "format_version": EXPERT_FORMAT_VERSION,
        },
    )
