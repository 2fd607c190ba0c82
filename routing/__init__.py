"""MoECollab routing: experts, gate, composition, training and evaluation.

Pure PyTorch; usable without Django. See docs/routing.md and docs/expert-format.md.
Names are imported when first used, so `import routing.config` (the web process
does) loads no torch.
"""

from importlib import import_module

_EXPORTS = {
    "DEFAULT_BASE_MODEL": "routing.basemodels",
    "BaseSpec": "routing.basemodels",
    "TensorCache": "routing.cache",
    "GateConfig": "routing.config",
    "LossWeights": "routing.config",
    "TrainConfig": "routing.config",
    "PACKAGED": "routing.data",
    "DatasetError": "routing.data",
    "DomainData": "routing.data",
    "Split": "routing.data",
    "load_domain": "routing.data",
    "read_table": "routing.data",
    "check_finite": "routing.files",
    "Gate": "routing.gate",
    "GateOutput": "routing.gate",
    "gate_losses": "routing.losses",
    "ContractError": "routing.safetensors_header",
    "read_header": "routing.safetensors_header",
    "get_kind": "routing.kinds",
    "BaseEncoder": "routing.kinds.classification.encoder",
    "ExpertHeader": "routing.kinds.classification.contract",
    "check_expert_file": "routing.kinds.classification.contract",
    "ClassifierExpert": "routing.kinds.classification.experts",
    "HeadExpert": "routing.kinds.classification.experts",
    "load_expert": "routing.kinds.classification.experts",
    "save_head_expert": "routing.kinds.classification.experts",
    "save_lora_expert": "routing.kinds.classification.experts",
    "MoEClassifier": "routing.kinds.classification.model",
    "compose": "routing.kinds.classification.composing",
    "evaluate_cached": "routing.kinds.classification.composing",
    "expert_log_probs": "routing.kinds.classification.composing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'routing' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
