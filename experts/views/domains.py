"""Domain pages for maintainers: create, edit (declared labels), upload data."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render

from routing.data import DatasetError

from ..forms import DomainDataForm, DomainForm
from ..queries import get_maintained_mixture
from ..services.domains import import_domain_file, labels_lacking
from ..uploading import bound_form


@login_required
def domain_data_upload(request, slug: str, name: str):
    mixture = get_maintained_mixture(request.user, slug)
    domain = get_object_or_404(mixture.domains, name=name)
    form, status = DomainDataForm(mixture=mixture), 200
    if request.method == "POST":
        form, refusal = bound_form(request, DomainDataForm, mixture=mixture)
        status = refusal.status if refusal else 400
        if refusal is None and form.is_valid():
            f = form.cleaned_data["file"]
            try:
                import_domain_file(domain, f.read(), f.name)
            except DatasetError as exc:
                form.add_error("file", str(exc))
            else:
                messages.success(
                    request,
                    f"{domain.name}: {domain.router_count} router and "
                    f"{domain.eval_count} held-out examples.",
                )
                return redirect(mixture)
    return render(
        request,
        "experts/domain_data.html",
        {"mixture": mixture, "domain": domain, "form": form},
        status=status,
    )


@login_required
def domain_create(request, slug: str):
    mixture = get_maintained_mixture(request.user, slug)
    form = DomainForm(request.POST or None, mixture=mixture)
    if request.method == "POST" and form.is_valid():
        domain = form.save()
        messages.success(request, f"Domain {domain.name} created; now upload its data.")
        return redirect("domain-data", slug=mixture.slug, name=domain.name)
    return render(
        request,
        "experts/domain_form.html",
        {"mixture": mixture, "form": form},
        status=400 if form.errors else 200,
    )


@login_required
def domain_edit(request, slug: str, name: str):
    mixture = get_maintained_mixture(request.user, slug)
    domain = get_object_or_404(mixture.domains, name=name)
    form = DomainForm(request.POST or None, instance=domain, mixture=mixture)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Domain {domain.name} saved.")
        return redirect(mixture)
    return render(
        request,
        "experts/domain_form.html",
        {"mixture": mixture, "domain": domain, "form": form, "lacking": labels_lacking(domain)},
        status=400 if form.errors else 200,
    )
