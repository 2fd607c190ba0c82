"""Site pages that belong to no single app."""

from django.shortcuts import render

from experts.views import mixture_list
from routing.base import DEFAULT_BASE_MODEL
from routing.contract import FORMAT_VERSION
from routing.data import PACKAGED


def home(request):
    datasets = [{"name": name, "description": desc} for name, (desc, _) in PACKAGED.items()]
    return render(
        request,
        "home.html",
        {
            "mixtures": mixture_list(request),
            "datasets": datasets,
            "base_model": DEFAULT_BASE_MODEL,
            "format_version": FORMAT_VERSION,
        },
    )
