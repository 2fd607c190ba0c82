"""What a worker process keeps between jobs: base models, the tensor cache, loaded
experts, each mixture's kind and domain data. Loading a base model costs seconds and
an expert file is read and checked once per process, not once per job.

Importing this module loads no torch (the web process imports the services): a kind's
tensor code is imported when a worker first uses it.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache

from django.conf import settings

from routing.kinds import MixtureKind, get_kind

from ..models import Composition, Expert, Mixture
from .blobs import local_copy
from .domains import domain_data
from .storage import composition_folder

LOADED_EXPERTS = 256  # experts kept loaded per process (each a few MB at most)


def kind_of(mixture: Mixture) -> MixtureKind:
    return get_kind(mixture.kind)


def base_for(mixture: Mixture, anchor=None):
    """The mixture's frozen base model with its anchor merged, loaded once per process; or
    with the given `Anchor` merged (False: none), for a composition made on another."""
    base = mixture.base_model
    anchor = anchor if anchor is not None else mixture.anchor
    return loaded_base(mixture.kind, base.name, base.revision, anchor.sha256 if anchor else "")


@lru_cache(maxsize=4)
def loaded_base(kind: str, name: str, revision: str, anchor: str = ""):
    """A base model (with the anchor of this sha256 merged) loaded once per process
    (seconds to load: workers and the demo seeder keep it), on the device the process
    computes on."""
    from routing.tensors import pick_device  # torch, in a worker only

    path, config = anchor_file(anchor) if anchor else (None, None)
    return get_kind(kind).load_base(
        name, revision=revision or None, device=pick_device(), anchor=path, anchor_config=config
    )


def anchor_file(sha256: str):
    """(a local copy of the stored anchor file with this sha256, its PEFT adapter config
    or None)."""
    from ..models import Anchor

    anchor = Anchor.objects.filter(sha256=sha256).exclude(file="").first()
    if anchor is None:
        raise LookupError(f"no stored anchor has the sha256 {sha256}")
    return local_copy(anchor.file, anchor.sha256), anchor.adapter_config


def tensor_cache():
    """The process's cache of features and expert outputs (one instance, so it counts hits)."""
    return _tensor_cache(str(settings.MOECOLLAB_CACHE_DIR))


@lru_cache(maxsize=4)
def _tensor_cache(root: str):
    from routing.cache import TensorCache  # torch, in a worker only

    return TensorCache(root)


_experts: OrderedDict[tuple, object] = OrderedDict()


def loaded_expert(expert: Expert):
    """The expert's file checked against the contract and loaded (a ContractError says
    why not); kept for later jobs of this process, keyed by what the file computes."""
    key = (expert.pk, expert.sha256, repr(expert.adapter_config))
    if key in _experts:
        _experts.move_to_end(key)
        return _experts[key]
    mixture = expert.mixture
    loaded = kind_of(mixture).load_expert(
        local_copy(expert.file, expert.sha256),
        base=base_for(mixture).spec,  # the weights this worker loaded, fingerprint included
        labels=list(expert.domain.labels),
        adapter_config=expert.adapter_config,
        name=f"{expert.name} #{expert.pk}",
    )
    _experts[key] = loaded
    while len(_experts) > LOADED_EXPERTS:
        _experts.popitem(last=False)
    return loaded


def mixture_data(mixture: Mixture) -> dict:
    """The routing library's view of every domain of the mixture that has data."""
    return {d.name: domain_data(d) for d in mixture.domains.all() if d.router_count}


def load_model(composition: Composition):
    """A stored composition, loaded on its mixture's base model."""
    mixture = composition.mixture
    base = base_for(mixture, composition.anchor if composition.anchor_id else False)
    return kind_of(mixture).load_composition(composition_folder(composition), base)


_compositions: OrderedDict[tuple, object] = OrderedDict()
LOADED_COMPOSITIONS = 8


def loaded_composition(composition: Composition):
    """A stored composition loaded once per process (generation reuses it)."""
    key = (composition.pk, composition.folder)
    if key in _compositions:
        _compositions.move_to_end(key)
        return _compositions[key]
    _compositions[key] = load_model(composition)
    while len(_compositions) > LOADED_COMPOSITIONS:
        _compositions.popitem(last=False)
    return _compositions[key]
