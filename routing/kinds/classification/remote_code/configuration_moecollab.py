"""Configuration of a MoECollab composition (shipped with every exported model)."""

from transformers import PretrainedConfig


class MoECollabConfig(PretrainedConfig):
    """A frozen base encoder, a gate over its mean-pooled output, and frozen experts.

    Args:
        base_encoder: the base encoder's own config as a dict (it has a `model_type`).
        experts: one entry per expert, in gate order: `name`, `kind` (`head` or `lora`),
            `domain`, `labels` (the expert's label names, a subset of `id2label`),
            `head_hidden` for heads, `lora` (`r`, `alpha`, `target_modules`) for LoRA.
        gate: `hidden` (0 = linear gate), `temperature`, `top_k` (experts run per input),
            `features` (what it reads of the base pass: `mean`, the last layer's mean, or
            `mean-cls-middle`, that, the last layer's [CLS] vector and the middle layer's
            mean), `reads_experts` (the gate also reads each head expert's top probability and
            normalised entropy), `expert_temperatures` (one per expert, divides its logits).
        max_input_tokens: inputs are cut to this many tokens, as the hub cut them in training.
        special_tokens_tail: special tokens the tokenizer puts at the end (BERT: [SEP]);
            they are kept when a longer input is cut.
        composition: where the model comes from (mixture, version, expert sha256s).
    """

    model_type = "moecollab"

    def __init__(
        self,
        base_encoder=None,
        experts=None,
        gate=None,
        max_input_tokens=128,
        special_tokens_tail=1,
        composition=None,
        **kwargs,
    ):
        self.base_encoder = dict(base_encoder or {})
        self.experts = list(experts or [])
        self.gate = dict(gate or {"hidden": 0, "temperature": 1.0, "top_k": 1})
        self.max_input_tokens = int(max_input_tokens)
        self.special_tokens_tail = int(special_tokens_tail)
        self.composition = dict(composition or {})
        super().__init__(**kwargs)
