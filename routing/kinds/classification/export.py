"""Export a composition as a Hugging Face model repository folder.

The folder holds `config.json`, the weights in two shards with their index
(`model-base.safetensors`: the base encoder, the same in every version;
`model-experts.safetensors`: the experts and the gate), the configuration and
modeling code that `trust_remote_code` loads (`routing/remote_code/`), the tokenizer
files and a `README.md` model card. `AutoModelForSequenceClassification
.from_pretrained(folder, trust_remote_code=True)` then gives the composition's own
predictions.

The export is deterministic: the same composition gives byte-identical files,
so re-publishing it changes nothing on the Hub.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch

from ...model_card import CardInfo
from ...shards import INDEX, base_and_experts, split_shards
from .card import model_card
from .model import MoEClassifier

# The base encoder's weights in a shard of their own, the same in every version (stored
# and sent once: routing/shards.py), the experts and the gate in the other.
SHARDS, SHARD_OF = base_and_experts("encoder.")
EXPORT_FILES = (
    "README.md",
    "config.json",
    "configuration_moecollab.py",
    INDEX,
    *SHARDS,
    "modeling_moecollab.py",
)


NO_LIMIT = int(1e30)  # transformers' own "no maximum length" for tokenizers


def special_tokens_tail(tokenizer) -> int:
    """How many special tokens the tokenizer appends to one sequence (BERT: 1, [SEP])."""
    plain = tokenizer("moe", add_special_tokens=False)["input_ids"]
    full = tokenizer("moe")["input_ids"]
    for head in range(len(full) - len(plain) + 1):
        if full[head : head + len(plain)] == plain:
            return len(full) - head - len(plain)
    return 0


def hf_config(composition: MoEClassifier, tokenizer, info: dict | None = None):
    """The MoECollabConfig of a composition (labels, experts, gate, base encoder)."""
    from .remote_code.configuration_moecollab import MoECollabConfig

    encoder_config = composition.encoder.model.config.to_dict()
    for key in ("_name_or_path", "architectures", "transformers_version", "id2label", "label2id"):
        encoder_config.pop(key, None)
    pairs = zip(composition.experts, composition.expert_domains, strict=True)
    experts = [expert.entry(domain) for expert, domain in pairs]
    gate = composition.gate.config
    return MoECollabConfig(
        base_encoder=encoder_config,
        experts=experts,
        gate={
            "hidden": gate.hidden,
            "temperature": gate.temperature,
            "top_k": gate.top_k,
            "features": composition.gate_features,
            "reads_experts": composition.reads_experts,
            "expert_temperatures": [round(float(t), 6) for t in composition.temperatures],
        },
        max_input_tokens=composition.encoder.max_length,
        special_tokens_tail=special_tokens_tail(tokenizer),
        composition={"base_model": composition.encoder.name, **(info or {})},
        id2label=dict(enumerate(composition.labels)),
        label2id={label: i for i, label in enumerate(composition.labels)},
        architectures=["MoECollabForSequenceClassification"],
    )


def hf_state_dict(composition: MoEClassifier, base_state: dict) -> dict[str, torch.Tensor]:
    """Tensor names of the transformers model: `encoder.*`, `gate.*`, `experts.{k}.*`."""
    out = {f"encoder.{k}": v for k, v in base_state.items()}
    out.update({f"gate.{k}": v for k, v in composition.gate.state_dict().items()})
    for k, expert in enumerate(composition.experts):
        if expert.architecture == "head":
            head = expert.head.state_dict()
            out.update({f"experts.{k}.{name}": head[name] for name in head})
            continue
        cls = expert.classifier.state_dict()
        out.update({f"experts.{k}.classifier.{name}": v for name, v in cls.items()})
        if expert.pooler is not None:
            pooler = expert.pooler.state_dict()
            out.update({f"experts.{k}.pooler.{name}": v for name, v in pooler.items()})
        for key, tensor in expert.lora_tensors.items():
            module, ab = key.rsplit(".lora_", 1)  # "encoder.layer.0...query", "A.weight"
            out[f"encoder.{module}.lora_{ab[0]}.{k}.weight"] = tensor
    return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}


def export_composition(
    composition: MoEClassifier, folder: str | os.PathLike, card: CardInfo | None = None
) -> Path:
    """Write the model repository folder; replaces `folder` atomically when done."""
    from transformers import AutoModel, AutoTokenizer

    from .remote_code.configuration_moecollab import MoECollabConfig
    from .remote_code.modeling_moecollab import MoECollabForSequenceClassification

    folder = Path(folder)
    encoder = composition.encoder
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # The model cuts inputs to the hub's max_length itself, as truncating there would
        # (see MoECollabConfig), so the tokenizer sets no limit of its own: with the base's
        # 512, `pipeline` warned about long texts that the model handles.
        tokenizer = AutoTokenizer.from_pretrained(encoder.location, revision=encoder.revision)
        tokenizer.model_max_length = NO_LIMIT
        card = card or CardInfo(title=folder.name)
        config = hf_config(composition, tokenizer, card.provenance())
        # The base weights come from their files, free of any adapter the hub attached.
        base = AutoModel.from_pretrained(encoder.location, revision=encoder.revision)
        state = hf_state_dict(composition, base.state_dict())
        with torch.device("cpu"):
            model = MoECollabForSequenceClassification(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"export does not fit: missing {missing[:3]}, extra {unexpected[:3]}")
        MoECollabConfig.register_for_auto_class()
        MoECollabForSequenceClassification.register_for_auto_class(
            "AutoModelForSequenceClassification"
        )
        model.save_pretrained(tmp, max_shard_size="1000GB")  # one file, then split
        split_shards(tmp, SHARDS, SHARD_OF)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(composition, card), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            # Another process exported the same composition in the meantime; exports
            # are deterministic, so its folder is this one.
            if not all((folder / name).is_file() for name in EXPORT_FILES):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_exported(folder) -> bool:
    """Whether `folder` is a composition exported as a transformers model folder."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "moecollab"
    except (OSError, ValueError):
        return False


@torch.inference_mode()
def predict_exported(folder, texts: list[str], *, top_k=None, device="cpu") -> list[dict]:
    """Classify texts with an exported folder through transformers alone (the hub's
    download, or a Hub snapshot), in the shape of `MoEClassifier.predict`."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)
    model = model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    experts = model.config.experts
    out = []
    for start in range(0, len(texts), 32):
        batch = tokenizer(
            texts[start : start + 32],
            padding=True,
            truncation=True,  # as the hub cut them; the model would cut them the same way
            max_length=model.config.max_input_tokens,
            return_tensors="pt",
        )
        result = model(**batch.to(device), top_k=top_k)
        probs = result.logits.exp()  # (B, U): the logits are log-probabilities
        for p, w in zip(probs, result.router_weights, strict=True):
            label, expert = int(p.argmax()), int(w.argmax())
            out.append(
                {
                    "label": model.config.id2label[label],
                    "score": float(p[label]),
                    "expert": experts[expert]["name"],
                    "domain": experts[expert]["domain"],
                }
            )
    return out
