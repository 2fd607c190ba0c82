"""A MoECollab language-model mixture as a transformers model (shipped with every export).

Each sequence is routed once, from the base model's hidden state mean-pooled over its
first `prefix_tokens` tokens; its experts' LoRA deltas then apply to every linear layer
they adapt. With one expert per sequence (top-1), or `mixing: merge` (the gate-weighted
sum of the selected experts' deltas), the model runs once per token with its KV cache.
With `mixing: mix` and several experts, the output is the mixture of the experts'
next-token distributions, p(x_t) = sum_k g_k p_k(x_t | x_<t), computed over the whole
sequence each step (such an export sets `use_cache` off). Only torch and transformers
are needed; `generate()` and `pipeline("text-generation")` run it.
"""

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_moecollab_lm import MoECollabLMConfig


def mean_pool(hidden, mask):
    mask = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, D)


def top_k_weights(probs, k):
    """Keep each row's k largest probabilities, renormalised to sum to 1."""
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    top = probs.topk(k, dim=-1)
    kept = torch.zeros_like(probs).scatter(-1, top.indices, top.values)
    return kept / kept.sum(-1, keepdim=True)


class Gate(nn.Module):
    def __init__(self, dim, n_experts, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.hidden = nn.Linear(dim, hidden) if hidden else None
        self.out = nn.Linear(hidden or dim, n_experts)

    def forward(self, features):
        h = self.norm(features)  # (B, D)
        if self.hidden is not None:
            h = F.gelu(self.hidden(h))  # (B, H)
        return self.out(h)  # (B, N)


class MultiLoRALinear(nn.Module):
    """A frozen linear layer with each expert's LoRA pair; `mixing` (B, N) weighs them."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.scaling = {}
        self.mixing = None

    def add(self, name, r, alpha):
        self.lora_A[name] = nn.Parameter(torch.zeros(r, self.base.in_features))
        self.lora_B[name] = nn.Parameter(torch.zeros(self.base.out_features, r))
        self.scaling[name] = alpha / r

    def forward(self, x):
        out = self.base(x)
        if self.mixing is None:
            return out
        for name in self.lora_A:
            w = self.mixing[:, int(name)]  # (B,)
            if not bool((w != 0).any()):
                continue
            delta = (x @ self.lora_A[name].T) @ self.lora_B[name].T
            out = out + (w * self.scaling[name]).view(-1, *([1] * (x.dim() - 1))) * delta
        return out


class MoECollabForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = MoECollabLMConfig
    main_input_name = "input_ids"
    _supports_cache_class = True

    def __init__(self, config):
        super().__init__(config)
        self.lm = AutoModelForCausalLM.from_config(config.text_config)
        router = config.router
        dim, n = config.text_config.hidden_size, len(config.experts)
        self.gate = (
            Gate(dim, n, int(router.get("hidden", 0))) if router["kind"] == "learned" else None
        )
        if router["kind"] == "centroid":
            self.register_buffer("centroids", torch.zeros(n, dim))
        self._lora = {}
        for k, expert in enumerate(config.experts):
            for path in expert["lora"]["modules"]:
                layer = self._lora_layer(path)
                layer.add(str(k), int(expert["lora"]["r"]), float(expert["lora"]["alpha"]))
        self._routing = None
        self.post_init()

    def _lora_layer(self, path):
        if path not in self._lora:
            parent_path, _, name = path.rpartition(".")
            parent = self.lm.get_submodule(parent_path)
            self._lora[path] = MultiLoRALinear(getattr(parent, name))
            setattr(parent, name, self._lora[path])
        return self._lora[path]

    def _init_weights(self, module):
        # Every weight comes from the checkpoint; new modules start as torch leaves them.
        pass

    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    def _mix(self, weights):
        for layer in self._lora.values():
            layer.mixing = weights

    def _prefix(self, input_ids, attention_mask):
        """Each row's first `prefix_tokens` real tokens, right-padded (B, P)."""
        p = int(self.config.router["prefix_tokens"])
        rows, masks = [], []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            real = ids[mask.bool()][:p]
            pad = p - len(real)
            rows.append(F.pad(real, (0, pad), value=int(self.config.text_config.pad_token_id or 0)))
            masks.append(F.pad(torch.ones_like(real), (0, pad), value=0))
        prefix, mask = torch.stack(rows), torch.stack(masks)
        width = int(mask.sum(1).max())  # as the hub's tokenizer cut and padded the prefix
        return prefix[:, :width], mask[:, :width]

    @torch.no_grad()
    def route(self, input_ids, attention_mask):
        """Routing weights (B, N) of each sequence, from its prefix only."""
        router = self.config.router
        prefix, mask = self._prefix(input_ids, attention_mask)
        k = int(router["top_k"])
        self._mix(None)
        if router["kind"] == "prefix-likelihood":
            scores = []
            for e in range(len(self.config.experts)):
                self._mix(
                    F.one_hot(torch.full_like(prefix[:, 0], e), len(self.config.experts)).float()
                )
                logits = self.lm(input_ids=prefix, attention_mask=mask).logits.float()
                lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, prefix[:, 1:, None])[..., 0]
                scores.append((lp * mask[:, 1:]).sum(-1))
            self._mix(None)
            return top_k_weights(torch.softmax(torch.stack(scores, 1), -1), k)
        out = self.lm.model(input_ids=prefix, attention_mask=mask, output_hidden_states=True)
        features = mean_pool(out.hidden_states[int(router["layer"])], mask).float()  # (B, D)
        if router["kind"] == "centroid":
            sims = F.normalize(features, dim=-1) @ F.normalize(self.centroids.float(), dim=-1).T
            return top_k_weights(torch.softmax(sims / float(router["temperature"]), -1), k)
        logits = self.gate(features)
        return top_k_weights(torch.softmax(logits / float(router["temperature"]), -1), k)

    def forward(self, input_ids=None, attention_mask=None, past_key_values=None, labels=None,
                use_cache=None, **kwargs):  # fmt: skip
        prefill = past_key_values is None or past_key_values.get_seq_length() == 0
        if prefill or self._routing is None or len(self._routing) != len(input_ids):
            mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            self._routing = self.route(input_ids, mask)
        weights = self._routing  # (B, N), fixed for the whole generation
        several = bool(((weights > 0).sum(-1) > 1).any())
        if self.config.router["mixing"] == "mix" and several:
            probs = 0
            for e in range(weights.shape[1]):
                if not bool((weights[:, e] > 0).any()):
                    continue
                self._mix(F.one_hot(torch.full_like(input_ids[:, 0], e), weights.shape[1]).float())
                out = self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                              **kwargs)  # fmt: skip
                probs = probs + weights[:, e, None, None] * torch.softmax(out.logits.float(), -1)
            self._mix(None)
            logits = probs.clamp(min=1e-30).log()  # (B, T, V): log p of the mixture
            past = None
        else:
            self._mix(weights)
            out = self.lm(
                input_ids=input_ids,
                attention_mask=attention_mask,
                past_key_values=past_key_values,
                use_cache=use_cache,
                **kwargs,
            )
            self._mix(None)
            logits, past = out.logits, out.past_key_values
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=past)
