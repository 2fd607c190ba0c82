"""Configuration of a MoECollab language-model mixture (shipped with every exported model)."""

from transformers import AutoConfig, PretrainedConfig


class MoECollabLMConfig(PretrainedConfig):
    """A frozen causal LM, LoRA experts and a router that reads each sequence's prefix.

    Args:
        text_config: the base model's own config (it has a `model_type`).
        experts: one entry per expert, in router order: `name`, `domain`, `sha256`,
            `lora` (`r`, `alpha`, `modules`: the adapted linear layers).
        router: `kind` (`learned`, `centroid` or `prefix-likelihood`), `prefix_tokens`
            (the router reads only these), `layer` (the hidden layer it mean-pools),
            `top_k`, `mixing` (`mix`: the selected experts' next-token distributions
            mixed; `merge`: their LoRA deltas mixed), and for a learned gate `hidden`
            and `temperature`.
        composition: where the model comes from (mixture, version, source page).
    """

    model_type = "moecollab-lm"

    def __init__(self, text_config=None, experts=None, router=None, composition=None, **kwargs):
        if isinstance(text_config, dict):
            text_config = AutoConfig.for_model(**text_config)
        self.text_config = text_config
        self.experts = list(experts or [])
        self.router = dict(router or {})
        self.composition = dict(composition or {})
        super().__init__(**kwargs)
