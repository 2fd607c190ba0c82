"""Composition pages: scores, routing, downloads (zip and file by file), pin, publish.

The web process never loads a model: a download whose export is missing asks a
worker for it and answers a page that waits for it (202)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from routing.report import matrix_rows

from ..charts import bars, heatmap
from ..downloads import stored_file_response, zip_response
from ..models import Job
from ..queries import get_composition
from ..services.compositions import pin
from ..services.exports import (
    default_format,
    format_refusal,
    missing_domains,
    offered_formats,
    repo_id_for,
    zip_entries,
)
from ..services.gguf_files import download_action, enqueue_download
from ..services.publishing import enqueue_publish, hub_configured, publish_refusal
from ..services.storage import (
    FORMATS,
    GGUF,
    download_name,
    download_ready,
    export_entries,
    export_files,
    export_manifest,
    is_stored,
    zip_key,
)
from .generation import try_context

SHARED_NAME = "base + anchor (shared)"  # a per-token composition's first column
DEFAULT_ENDPOINT = "https://huggingface.co"
CHART_EXPERTS = 40  # the busiest experts, in the routing heatmap and the utilisation chart
EXPERT_ROWS = 50  # experts per page of the composition's table


def snippets(composition, offered: list[dict]) -> dict:
    """Copy-paste code for transformers, huggingface_hub and the light export."""
    mixture = composition.mixture
    tag = f"v{composition.version}"
    published = composition.hub_status == composition.Publish.PUBLISHED
    light_default = default_format(composition).name == "light"
    repo = (composition.hub_repo if published else repo_id_for(mixture)) or "<namespace>/<repo>"
    local = f"{mixture.slug}-{tag}"
    endpoint = settings.MOECOLLAB_HF_ENDPOINT
    env = (
        f"# in the shell first: export HF_ENDPOINT={endpoint}\n"
        if endpoint != DEFAULT_ENDPOINT
        else ""
    )
    # the Hub holds the default format: transformers loads it from there when it is full
    on_hub = published and not light_default
    model = f'"{repo}", revision="{tag}"' if on_hub else f'"./{local}"'
    kind = mixture.kind_info
    remote = ", trust_remote_code=True" if kind.remote_code(composition.metrics or {}) else ""
    transformers = (
        "from transformers import pipeline\n\n"
        f'run = pipeline("{kind.pipeline_task}", model={model}{remote})\n'
        f"print(run({kind.example_input!r}))"
    )
    hub = (
        "from huggingface_hub import snapshot_download\n\n"
        f'folder = snapshot_download("{repo}", revision="{tag}")'
    )
    source = (f'snapshot_download("{repo}", revision="{tag}")' if published and light_default
              else f'"{local}-light.zip"')  # fmt: skip
    call = (f"model.generate([{kind.example_input!r}])[0].text" if kind.generates
            else f"model.predict([{kind.example_input!r}])")  # fmt: skip
    light = (
        "from routing.light import load_light  # the hub's routing library\n"
        + ("from huggingface_hub import snapshot_download\n" if source.startswith("snap") else "")
        + f"\nmodel = load_light({source})  # fetches or finds the base, checks it\n"
        f"print({call})"
    )
    gguf = None
    if kind.generates and any(f["name"] == GGUF.name and f["reason"] is None for f in offered):
        gguf = (
            "from llama_cpp import Llama\n\n"
            f'llm = Llama(model_path="{download_name(composition, GGUF)}")\n'
            f"print(llm({kind.example_input!r}, max_tokens=32, temperature=0)"
            '["choices"][0]["text"])'
        )
    return {
        "gguf": gguf,
        "transformers": (env if on_hub else "") + transformers,
        "snapshot": env + hub,
        "light": (env if published and light_default else "") + light,
        "transformers_from": "the Hub" if on_hub else "the unzipped full download",
    }


def composition_detail(request, slug: str, version: int):
    composition = get_composition(slug, version)
    mixture = composition.mixture
    metrics = composition.metrics or {}
    util = metrics.get("utilisation", {})
    shas = composition.expert_shas
    load = util.get("load") or []
    # Charts and the table stay readable (and the page fast) with thousands of experts:
    # the charts show the busiest experts, the table pages through all of them.
    order = sorted(range(len(shas)), key=lambda k: -(load[k] if k < len(load) else 0))
    table = Paginator(order, EXPERT_ROWS).get_page(request.GET.get("page"))
    wanted = set(order[:CHART_EXPERTS]) | set(table.object_list)
    experts = {
        e.sha256: e
        for e in composition.experts.filter(sha256__in=[shas[k] for k in wanted]).select_related(
            "owner", "domain"
        )
    }
    charted = [k for k in order[:CHART_EXPERTS] if shas[k] in experts]
    names = [experts[shas[k]].name for k in charted]
    # A per-token composition's matrices have the shared expert (the base with the anchor
    # merged) in their first columns, before the contributed experts in gate order.
    shared = int(metrics.get("shared_columns", 0))
    columns = list(range(shared)) + [shared + k for k in charted]
    column_names = [SHARED_NAME] * shared + names
    heat = bars_svg = ""
    if metrics.get("routing_matrix") and names:
        heat = heatmap(
            [[row[c] for c in columns] for row in metrics["routing_matrix"]],
            matrix_rows(metrics),
            column_names,
            "Routing matrix: share of each domain's "
            + ("tokens" if shared else "traffic")
            + " per expert"
            + (f" (the {len(names)} busiest experts)" if len(shas) > len(names) else ""),
        )
    if load and names:
        bars_svg = bars(
            [load[c] for c in columns],
            column_names,
            "Share of routed " + ("tokens" if shared else "traffic") + " per expert",
            reference=1 / (len(shas) + shared),
        )
    layer_maps = [
        (domain, heatmap(
            [[layer[d][c] for c in columns] for layer in metrics["layer_routing"]],
            [f"layer {i}" for i in range(len(metrics["layer_routing"]))],
            column_names,
            f"Share of {domain}'s tokens sent to each expert, per layer",
            cell=20, values=False,
        ))
        for d, domain in enumerate(matrix_rows(metrics))
    ] if metrics.get("layer_routing") and names else []  # fmt: skip
    missing = missing_domains(composition)
    contributions = composition.contributions or {}
    rows = [
        {"expert": e, **contributions.get(str(e.pk), {})}
        for e in (experts.get(shas[k]) for k in table.object_list)
        if e is not None
    ]
    publish_job = composition.jobs.filter(action=Job.Action.PUBLISH).first()
    kind = mixture.kind_info
    offered = offered_formats(composition)
    return render(
        request,
        "experts/composition.html",
        {
            "composition": composition,
            "mixture": mixture,
            "metrics": metrics,
            "heatmap": heat,
            "layer_maps": layer_maps,
            "bars": bars_svg,
            "rows": rows,
            "table": table,
            "missing_domains": missing,
            "domain_count": len(metrics.get("domains", {})) + len(missing),
            "is_maintainer": mixture.is_maintainer(request.user),
            "files": export_files(composition),
            "formats": offered,
            "default_format": default_format(composition).name,
            "hub_configured": hub_configured(),
            "repo_id": composition.hub_repo or repo_id_for(mixture),
            "publish_job": publish_job,
            "snippets": snippets(composition, offered),
            "kind": kind,
            "charted_names": names,
            "score_rows": kind.score_rows(metrics, names, charted),
            "overall_score": kind.overall(metrics),
            "try": try_context(request, composition) if kind.generates else None,
        },
    )


def _preparing(request, composition, fmt):
    """The page that waits for a worker to write the download (202, reloads when ready)."""
    if not is_stored(composition):
        raise Http404("this composition has no stored files to export")
    job = enqueue_download(composition, fmt)
    return render(
        request,
        "experts/preparing.html",
        {"composition": composition, "mixture": composition.mixture, "job": job, "fmt": fmt},
        status=202,
    )


def _format(request, composition):
    """The format `?format=` asks for (the composition's default without one), or a 400
    that says why (an unknown name, or a form this composition has not)."""
    name = request.GET.get("format")
    if name is None:
        return default_format(composition)
    if name not in FORMATS:
        return HttpResponseBadRequest(
            f"unknown format {name!r}: this hub serves {', '.join(sorted(FORMATS))}",
            content_type="text/plain",
        )
    reason = format_refusal(composition, FORMATS[name])
    if reason:
        return HttpResponseBadRequest(
            f"this composition has no {name} download: {reason}", content_type="text/plain"
        )
    return FORMATS[name]


def composition_download(request, slug: str, version: int):
    """The export as one zip, written by a worker (from the storage): `?format=light` or
    `full`, else the composition's default; `?format=gguf`: the GGUF file itself."""
    composition = get_composition(slug, version)
    fmt = _format(request, composition)
    if isinstance(fmt, HttpResponseBadRequest):
        return fmt
    manifest = export_manifest(composition, fmt)  # read once: in a bucket, a round trip
    if manifest is None:
        return _preparing(request, composition, fmt)
    if not fmt.zipped:  # one file: served as stored (from a bucket, a pre-signed link)
        [entry] = export_entries(composition, fmt, manifest).values()
        return stored_file_response(entry["stored"], download_name(composition, fmt))
    size = (manifest.get("zip") or {}).get("size")
    if size is None:  # stored before zips were assembled on download: its stored zip
        return stored_file_response(zip_key(composition, fmt), download_name(composition, fmt))
    entries = zip_entries(composition, fmt, manifest)
    return zip_response(entries, size, download_name(composition, fmt))


def composition_file(request, slug: str, version: int, name: str):
    """One file of the export, by its name in the model repository."""
    composition = get_composition(slug, version)
    files = export_entries(composition)
    if not files:
        return _preparing(request, composition, FORMATS["full"])
    if name not in files:
        raise Http404(f"the export has no file named {name!r}")
    return stored_file_response(files[name]["stored"], name)


def download_status(request, slug: str, version: int):
    """Whether the download is ready, and the export job's progress, for the waiting page."""
    composition = get_composition(slug, version)
    fmt = _format(request, composition)
    if isinstance(fmt, HttpResponseBadRequest):
        return fmt
    job = composition.jobs.filter(action=download_action(fmt)).order_by("-created_at").first()
    return JsonResponse(
        {
            "ready": download_ready(composition, fmt),
            "job": None
            if job is None
            else {"status": job.status, "progress": job.progress, "message": job.message},
        }
    )


@login_required
@require_POST
def composition_pin(request, slug: str, version: int):
    composition = get_composition(slug, version)
    if not composition.mixture.is_maintainer(request.user):
        raise Http404("no such composition")
    pin(composition)
    messages.success(request, f"v{version} is now the current composition.")
    return redirect(composition)


@login_required
@require_POST
def composition_publish(request, slug: str, version: int):
    composition = get_composition(slug, version)
    mixture = composition.mixture
    if not mixture.is_maintainer(request.user):
        raise Http404("no such composition")
    refusal = publish_refusal(mixture)
    if refusal:
        messages.error(request, refusal)
    else:
        enqueue_publish(composition)
        messages.success(request, f"v{version} is queued for publishing to {repo_id_for(mixture)}.")
    return redirect(composition)
