"""A MoECollab composition as a transformers model (shipped with every exported model).

p(y|x) = sum over the gate's top-k experts of g_k(x) * p_k(y|x), each expert's
distribution placed into the union label space and, when the hub calibrated it,
divided by its temperature before the softmax. The gate reads the frozen
encoder's mean-pooled last layer (with `gate.features` "mean-cls-middle", also
its [CLS] vector and the middle layer's mean, from the same pass) and, if it
reads its experts (`head` experts only), each expert's top probability and
normalised entropy, so every head runs first; otherwise only the experts the
gate selects for an input run on it: `head` experts read the frozen encoder's
mean-pooled output; `lora` experts run the encoder again with their LoRA
matrices switched on, and read its mean-pooled output or, for an expert that
was a PEFT `SEQ_CLS` adapter, BERT's pooler over [CLS] (its own copy), as
`BertForSequenceClassification` does. The logits returned are log p(y|x), so that softmax
(what `pipeline("text-classification")` applies) gives back p(y|x).
"""

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_moecollab import MoECollabConfig


@dataclass
class MoECollabOutput(SequenceClassifierOutput):
    """`logits` are log-probabilities; `router_weights` (B, N) are the gate's top-k weights."""

    router_weights: torch.FloatTensor | None = None


def mean_pool(hidden, mask):
    mask = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, D)


def top_k_weights(probs, k):
    """Keep each row's k largest probabilities, renormalised to sum to 1."""
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    top = probs.topk(k, dim=-1)  # (B, k)
    kept = torch.zeros_like(probs).scatter(-1, top.indices, top.values)  # (B, N)
    return kept / kept.sum(-1, keepdim=True)


class MultiLoRALinear(nn.Linear):
    """A frozen linear layer with one LoRA pair per expert; at most one is active."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__(in_features, out_features, bias=bias)
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.scaling = {}
        self.active = None

    def add(self, name, r, alpha):
        self.lora_A[name] = nn.Linear(self.in_features, r, bias=False)
        self.lora_B[name] = nn.Linear(r, self.out_features, bias=False)
        self.scaling[name] = alpha / r

    def forward(self, x):
        out = F.linear(x, self.weight, self.bias)
        if self.active is not None:
            a = self.active
            out = out + self.lora_B[a](self.lora_A[a](x)) * self.scaling[a]
        return out


class Gate(nn.Module):
    def __init__(self, dim, n_experts, hidden, side_dim=0):
        super().__init__()
        self.norm = nn.LayerNorm(dim + side_dim)
        self.hidden = nn.Linear(dim + side_dim, hidden) if hidden else None
        self.out = nn.Linear(hidden or dim + side_dim, n_experts)

    def forward(self, features, signals=None):
        if signals is not None:
            features = torch.cat([features, signals], dim=-1)  # (B, D + 2N)
        h = self.norm(features)  # (B, D + 2N), features and signals normalised together
        if self.hidden is not None:
            h = F.gelu(self.hidden(h))  # (B, H)
        return self.out(h)  # (B, N)


class HeadExpert(nn.Module):
    def __init__(self, dim, hidden, n_labels):
        super().__init__()
        self.hidden = nn.Linear(dim, hidden)
        self.out = nn.Linear(hidden, n_labels)

    def forward(self, features):
        return self.out(F.gelu(self.hidden(features)))  # (B, L)


class LoraExpert(nn.Module):
    def __init__(self, dim, n_labels, pooling="mean"):
        super().__init__()
        self.classifier = nn.Linear(dim, n_labels)
        self.pooler = nn.Linear(dim, dim) if pooling == "cls_pooler" else None

    def pool(self, hidden, mask):
        if self.pooler is not None:
            return torch.tanh(self.pooler(hidden[:, 0].float()))  # (B, D)
        return mean_pool(hidden, mask).float()  # (B, D)


class MoECollabForSequenceClassification(PreTrainedModel):
    config_class = MoECollabConfig
    main_input_name = "input_ids"

    def __init__(self, config):
        super().__init__(config)
        encoder_config = AutoConfig.for_model(**config.base_encoder)
        self.encoder = AutoModel.from_config(encoder_config)
        dim = encoder_config.hidden_size
        n = len(config.experts)
        self.reads_experts = bool(config.gate.get("reads_experts", False))
        self.temperatures = [float(t) for t in config.gate.get("expert_temperatures") or [1] * n]
        side = 2 * n if self.reads_experts else 0
        # what the gate reads of the base pass: "mean" (the last layer's mean) or
        # "mean-cls-middle" (that, the last layer's [CLS] vector and the middle layer's mean)
        self.gate_features = config.gate.get("features", "mean")
        width = dim * (1 if self.gate_features == "mean" else 3)
        self.gate = Gate(width, n, int(config.gate.get("hidden", 0)), side)
        index = {label: int(i) for label, i in config.label2id.items()}
        # each expert's labels as columns of the union label space
        self.label_columns = [[index[label] for label in e["labels"]] for e in config.experts]
        self.experts = nn.ModuleList()
        self._lora_layers = {}
        for k, spec in enumerate(config.experts):
            if spec["kind"] == "head":
                self.experts.append(HeadExpert(dim, int(spec["head_hidden"]), len(spec["labels"])))
            else:
                pooling = spec.get("pooling", "mean")
                self.experts.append(LoraExpert(dim, len(spec["labels"]), pooling))
                lora = spec["lora"]
                for path in lora["modules"]:
                    layer = self._lora_layer(path)
                    layer.add(str(k), int(lora["r"]), float(lora["alpha"]))
        self.post_init()

    def _lora_layer(self, path):
        """Swap the encoder's linear layer at `path` for a MultiLoRALinear, once."""
        if path in self._lora_layers:
            return self._lora_layers[path]
        parent_path, _, name = path.rpartition(".")
        parent = self.encoder.get_submodule(parent_path)
        old = getattr(parent, name)
        layer = MultiLoRALinear(old.in_features, old.out_features, bias=old.bias is not None)
        setattr(parent, name, layer)
        self._lora_layers[path] = layer
        return layer

    def _init_weights(self, module):
        # Every weight comes from the checkpoint; new modules start as torch leaves them.
        pass

    def _activate(self, name):
        for layer in self._lora_layers.values():
            layer.active = name

    def _cut(self, inputs):
        """Cut inputs longer than `max_input_tokens` as the tokenizer would: keep the start
        and the trailing special tokens (right padding assumed)."""
        m, tail = self.config.max_input_tokens, self.config.special_tokens_tail
        ids = inputs["input_ids"]
        if ids.shape[1] <= m:
            return inputs
        lengths = inputs["attention_mask"].sum(1, keepdim=True)  # (B, 1)
        pos = torch.arange(m, device=ids.device).expand(ids.shape[0], m)  # (B, m)
        too_long = lengths > m  # (B, 1)
        src = torch.where(too_long & (pos >= m - tail), lengths - m + pos, pos)  # (B, m)
        return {key: value.gather(1, src) for key, value in inputs.items()}

    def _hidden(self, inputs, adapter=None, all_layers=False):
        self._activate(adapter)
        try:
            out = self.encoder(**inputs, output_hidden_states=all_layers)
            return out.hidden_states if all_layers else out.last_hidden_state  # (B, T, D)
        finally:
            self._activate(None)

    def _base_pass(self, inputs):
        """(the mean-pooled last layer (B, D) the heads read, what the gate reads)."""
        mask = inputs["attention_mask"]
        if self.gate_features == "mean":
            features = mean_pool(self._hidden(inputs), mask).float()  # (B, D)
            return features, features
        states = self._hidden(inputs, all_layers=True)
        last, middle = states[-1], states[len(states) // 2]
        features = mean_pool(last, mask).float()  # (B, D)
        extra = [last[:, 0].float(), mean_pool(middle, mask).float()]
        return features, torch.cat([features, *extra], dim=-1)  # (B, 3D)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        labels=None,
        top_k=None,
        return_dict=None,
        **kwargs,
    ):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        inputs = self._cut(inputs)
        features, gate_in = self._base_pass(inputs)
        k = int(self.config.gate["top_k"]) if top_k is None else int(top_k)
        if self.reads_experts:
            probs, weights = self._read_and_mix(features, gate_in, k)
        else:
            probs, weights = self._route_and_run(inputs, features, gate_in, k)
        log_probs = probs.clamp(min=1e-12).log()  # (B, U)
        loss = F.nll_loss(log_probs, labels) if labels is not None else None
        return MoECollabOutput(loss=loss, logits=log_probs, router_weights=weights)

    def _gate_weights(self, features, signals, k):
        logits = self.gate(features, signals)  # (B, N)
        probs_gate = torch.softmax(logits / float(self.config.gate["temperature"]), dim=-1)
        return top_k_weights(probs_gate, k)  # (B, N), zero for experts not selected

    def _expert_probs(self, k, logits):
        return (logits / self.temperatures[k]).softmax(-1)  # (b, L_k), calibrated

    def _read_and_mix(self, features, gate_in, k):
        """Every head answers; the gate reads their answers beside the features."""
        union = features.new_zeros(features.shape[0], len(self.experts), self.config.num_labels)
        for i, expert in enumerate(self.experts):
            cols = torch.tensor(self.label_columns[i], device=features.device)
            union[:, i, cols] = self._expert_probs(i, expert(features))  # (B, N, U)
        top = union.max(-1).values  # (B, N)
        sizes = torch.tensor(
            [math.log(max(len(c), 2)) for c in self.label_columns], device=features.device
        )
        entropy = -(union * union.clamp(min=1e-12).log()).sum(-1) / sizes  # (B, N)
        weights = self._gate_weights(gate_in, torch.stack([top, entropy], -1).flatten(1), k)
        return torch.einsum("bn,bnu->bu", weights, union), weights

    def _route_and_run(self, inputs, features, gate_in, k):
        """Only the experts the gate selects run, each on the inputs routed to it."""
        weights = self._gate_weights(gate_in, None, k)
        probs = features.new_zeros(features.shape[0], self.config.num_labels)  # (B, U)
        for i, expert in enumerate(self.experts):
            rows = weights[:, i].nonzero().squeeze(1)  # inputs routed to expert i
            if rows.numel() == 0:
                continue
            if isinstance(expert, HeadExpert):
                logits = expert(features[rows])  # (b, L_i)
            else:
                sub = {key: value[rows] for key, value in inputs.items()}
                pooled = expert.pool(self._hidden(sub, adapter=str(i)), sub["attention_mask"])
                logits = expert.classifier(pooled)  # (b, L_i)
            cols = torch.tensor(self.label_columns[i], device=probs.device)
            probs[rows[:, None], cols[None, :]] += weights[rows, i, None] * self._expert_probs(
                i, logits
            )
        return probs, weights
