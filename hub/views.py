"""Site pages that belong to no single app."""

from django.shortcuts import render

from experts.models import Domain
from experts.views.mixtures import mixture_list
from routing.basemodels import DEFAULT_BASE_MODEL
from routing.kinds import KINDS, get_kind

HOME_DOMAINS = 24


def home(request):
    default = next(iter(KINDS.values()))
    datasets = [
        {"name": name, "description": about}
        for name, about in get_kind(default.name).packaged_data().items()
    ]
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
            "kinds": KINDS.values(),
        },
    )
