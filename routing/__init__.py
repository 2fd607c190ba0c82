"""MoECollab routing: experts, gate, composition, training and evaluation.

Pure PyTorch; usable without Django. See docs/routing.md and docs/expert-format.md.
"""

from .base import DEFAULT_BASE_MODEL, BaseEncoder, BaseSpec
from .cache import TensorCache
from .compose import Composition
from .config import GateConfig, LossWeights, TrainConfig
from .contract import ExpertHeader, check_expert_file, check_finite
from .data import PACKAGED, DatasetError, DomainData, Split, load_domain, read_table
from .experts import Expert, HeadExpert, load_expert, save_head_expert, save_lora_expert
from .gate import Gate, GateOutput
from .losses import gate_losses
from .safetensors_header import ContractError, read_header
from .workflow import compose, evaluate_cached, expert_log_probs

__all__ = [
    "DEFAULT_BASE_MODEL",
    "PACKAGED",
    "BaseEncoder",
    "BaseSpec",
    "Composition",
    "ContractError",
    "DatasetError",
    "DomainData",
    "Expert",
    "ExpertHeader",
    "Gate",
    "GateConfig",
    "GateOutput",
    "HeadExpert",
    "LossWeights",
    "Split",
    "TensorCache",
    "TrainConfig",
    "check_expert_file",
    "check_finite",
    "compose",
    "evaluate_cached",
    "expert_log_probs",
    "gate_losses",
    "load_domain",
    "load_expert",
    "read_header",
    "read_table",
    "save_head_expert",
    "save_lora_expert",
]
