"""Expert files made the ways contributors make them: the project's own head and lora
files, and plain PEFT adapters (the documented mean-pooling module, and the ordinary
AutoModelForSequenceClassification way), with what PEFT itself computes for them."""

from __future__ import annotations


def make_head_file(path, encoder, labels, domain=None, seed=0, hidden=16):
    import torch

    from routing.kinds.classification.experts import HeadExpert, save_head_expert

    torch.manual_seed(seed)
    head = HeadExpert(encoder.hidden_size, hidden, len(labels))
    save_head_expert(path, head, labels=labels, base_model=encoder.name, domain=domain)
    return path


def make_lora_file(path, encoder, labels, domain=None, seed=0, r=4):
    """A LoRA expert with random (non-zero) A and B so that it changes the encoder."""
    import torch
    from torch import nn

    from routing.kinds.classification.experts import save_lora_expert

    g = torch.Generator().manual_seed(seed)
    d = encoder.hidden_size
    lora = {}
    for layer in range(encoder.spec.num_layers):
        for module in ("attention.self.query", "attention.self.value"):
            key = f"encoder.layer.{layer}.{module}"
            lora[f"{key}.lora_A.weight"] = torch.randn(r, d, generator=g) * 0.3
            lora[f"{key}.lora_B.weight"] = torch.randn(d, r, generator=g) * 0.3
    classifier = nn.Linear(d, len(labels))
    with torch.no_grad():
        classifier.weight.copy_(torch.randn(len(labels), d, generator=g))
    save_lora_expert(
        path,
        lora_tensors=lora,
        classifier=classifier,
        r=r,
        alpha=2 * r,
        target_modules=["query", "value"],
        labels=labels,
        base_model=encoder.name,
        domain=domain,
    )
    return path


def save_plain_peft_adapter(folder, encoder, n_labels):
    """Save what a PEFT-only contributor uploads: adapter_model.safetensors + its config."""
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import AutoModel

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(encoder.location)
            self.classifier = nn.Linear(encoder.hidden_size, n_labels)

    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]
    )
    get_peft_model(Classifier(), config).save_pretrained(folder)


def save_seq_cls_adapter(
    folder,
    encoder,
    labels,
    *,
    rows=None,
    steps=30,
    target_modules=("query", "value"),
    modules_to_save=None,
    seed=0,
):
    """Save a LoRA adapter the ordinary PEFT way: AutoModelForSequenceClassification on the
    base, LoraConfig(task_type="SEQ_CLS"), save_pretrained. With `rows` (text, label) it
    trains for `steps` steps; without, its trainable weights are drawn at random so that
    every part of it (LoRA, pooler, classifier) changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder.location, num_labels=len(labels)
    )
    config = LoraConfig(
        task_type="SEQ_CLS",
        r=4,
        lora_alpha=8,
        target_modules=list(target_modules),
        modules_to_save=modules_to_save,
    )
    model = get_peft_model(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if rows is None:
        with torch.no_grad():
            for p in trainable:
                p.copy_(torch.randn_like(p) * 0.3)
    else:
        tokenizer = AutoTokenizer.from_pretrained(encoder.location)
        index = {label: i for i, label in enumerate(labels)}
        opt = torch.optim.AdamW(trainable, lr=1e-2)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            pick = torch.randint(len(rows), (16,), generator=g).tolist()
            batch = tokenizer([rows[i][0] for i in pick], padding=True, return_tensors="pt")
            target = torch.tensor([index[rows[i][1]] for i in pick])
            loss = model(**batch, labels=target).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.save_pretrained(folder)
    return folder


def peft_probabilities(folder, encoder, n_labels, texts, max_length=32):
    """What PEFT and transformers compute for a saved SEQ_CLS adapter: (n, L) probabilities."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base = AutoModelForSequenceClassification.from_pretrained(encoder.location, num_labels=n_labels)
    model = PeftModel.from_pretrained(base, folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(encoder.location)
    batch = tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**batch).logits.softmax(-1)
