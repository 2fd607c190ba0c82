"""The real offline base of language-model mixtures: SmolLM2-135M-Instruct from its GGUF
package, dequantised; a plain PEFT adapter trained on it runs in the hub as in PEFT."""

import pytest
import torch

from devtools.tiny_lm import peft_lm, save_lm_peft_adapter
from routing.basemodels import DEFAULT_LM_BASE, BaseSpec
from routing.config import LMRouting
from routing.kinds.causal_lm.base import CausalBase
from routing.kinds.causal_lm.contract import check_lm_expert
from routing.kinds.causal_lm.experts import load_lm_expert
from routing.kinds.causal_lm.model import MoECausalLM

pytestmark = pytest.mark.smollm2
TEXTS = [
    "The government announced on Tuesday that the new budget would cut taxes for",
    "def read_config(path):\n    with open(path) as f:\n        return json.load(f)",
]


def test_smollm2_runs_a_plain_peft_adapter_as_peft_does(tmp_path):
    base = CausalBase(device="cpu", max_tokens=32)
    assert (base.name, base.gguf_file) == (DEFAULT_LM_BASE, "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (base.spec.hidden_size, base.spec.num_layers, base.spec.kv_size) == (576, 30, 192)
    assert BaseSpec.read(DEFAULT_LM_BASE).kv_size == 192  # from the GGUF file's header
    folder = save_lm_peft_adapter(tmp_path / "peft", base.location, gguf_file=base.gguf_file)
    # the adapter names the package's folder: recognised as the packaged GGUF base
    header = check_lm_expert(folder / "adapter_model.safetensors", base=base.spec)
    assert header.base_model == DEFAULT_LM_BASE
    expert = load_lm_expert(folder / "adapter_model.safetensors", base=base.spec)
    model = MoECausalLM.of_one(base, expert, LMRouting(prefix_tokens=8))
    peft = peft_lm(folder, base.location, gguf_file=base.gguf_file)
    batch = base.tokenize(TEXTS)
    with torch.no_grad(), base.bank.only(model.names[0], len(TEXTS)):
        ours = base.model(**batch).logits
    theirs = peft(**batch).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    prompt = base.tokenizer(["The government announced"], return_tensors="pt")
    tokens = peft.generate(**prompt, max_new_tokens=6, do_sample=False)
    expected = base.tokenizer.decode(tokens[0, prompt["input_ids"].shape[1] :])
    assert model.generate(["The government announced"], max_new_tokens=6)[0].text == expected
