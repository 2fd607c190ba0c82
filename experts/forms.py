from __future__ import annotations

from django import forms

from routing.config import ClassifierRouting, LMRouting, to_dict

from .models import Domain, Expert, Mixture, default_routing
from .services import mixtures
from .services.uploads import parse_adapter_config


class UploadForm(forms.Form):
    domain = forms.ModelChoiceField(queryset=Domain.objects.none(), empty_label=None)
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    licence = forms.ChoiceField(choices=Expert.Licence.choices, initial=Expert.Licence.APACHE)
    file = forms.FileField(help_text="the expert's .safetensors file")
    adapter_config = forms.FileField(
        required=False, help_text="adapter_config.json, only for a plain PEFT adapter"
    )

    def __init__(self, *args, mixture, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["domain"].queryset = mixture.domains.all()
        self.fields["domain"].label_from_instance = lambda d: (
            f"{d.name} ({', '.join(d.labels)})" if d.labels else d.name
        )

    def clean_adapter_config(self):
        f = self.cleaned_data.get("adapter_config")
        if not f:
            return None
        try:
            return parse_adapter_config(f)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class DomainDataForm(forms.Form):
    file = forms.FileField(help_text="CSV with a text,label header, or JSONL")


class HubSettingsForm(forms.ModelForm):
    """A maintainer's Hub settings for a mixture: where it publishes, and when."""

    class Meta:
        model = Mixture
        fields = ["hub_repo_id", "publish_automatically"]
        help_texts = {"hub_repo_id": "namespace/name on the Hugging Face Hub"}

    def __init__(self, *args, default_repo: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["hub_repo_id"]
        field.widget.attrs["placeholder"] = default_repo or "namespace/name"
        if default_repo and not self.instance.hub_repo_id:
            field.help_text = f"empty: {default_repo}, from the hub's namespace"

    def clean_hub_repo_id(self):
        return _checked(mixtures.clean_repo_id, self.cleaned_data["hub_repo_id"])


def _checked(check, value):
    """A service check's ValueError as the form's error."""
    try:
        return check(value)
    except ValueError as exc:
        raise forms.ValidationError(str(exc)) from None


GATE_FIELDS = {
    "top_k": (forms.IntegerField, "experts each input is sent to (dense when it is at least N)"),
    "temperature": (forms.FloatField, "softmax temperature of the gate"),
    "hidden": (forms.IntegerField, "hidden width of the gate's MLP; 0 makes it linear"),
    "train_top_k": (forms.IntegerField, "top-k while training; 0 trains dense"),
    "noise_std": (forms.FloatField, "noise on the gate's logits while training"),
}
LOSS_FIELDS = ("routing", "balance", "entropy_example", "entropy_batch", "z")
LM_FIELDS = {
    "prefix_tokens": (forms.IntegerField, "the router reads only these first tokens of a text"),
    "layer": (forms.IntegerField, "the base's hidden layer the router reads (-1: the last)"),
    "router": (forms.ChoiceField, "learned (a trained gate), centroid or prefix-likelihood"),
    "mixing": (forms.ChoiceField, "mix: the experts' next-token distributions; merge: their "
               "LoRA deltas (one pass)"),
}  # fmt: skip
LM_CHOICES = {"router": mixtures.LM_ROUTERS, "mixing": mixtures.LM_MIXINGS}
CLASSIFIER_FIELDS = {
    "read_experts": "the gate also reads each head expert's confidence and entropy",
    "calibrate": "one temperature per expert, fitted on its domain's router data",
    "balance_domains": "the gate learns from every domain equally, whatever its size",
}


class MixtureForm(forms.ModelForm):
    """A mixture's settings, routing included, for its maintainers (and its creator)."""

    class Meta:
        model = Mixture
        fields = [
            "name",
            "slug",
            "description",
            "task_type",
            "base_model",
            "tolerance",
            "upload_quota",
            "max_upload_bytes",
            "hub_repo_id",
            "publish_automatically",
        ]
        help_texts = {
            "slug": "its address: /m/<slug>/ (letters, digits, hyphens)",
            "hub_repo_id": "namespace/name on the Hugging Face Hub",
        }

    seed = forms.IntegerField(min_value=0, initial=0, help_text="seed of the gate's training")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        routing = (self.instance.routing if self.instance.pk else None) or default_routing()
        for name, (kind, help_text) in GATE_FIELDS.items():
            self.fields[f"gate_{name}"] = kind(
                label=f"Gate: {name.replace('_', ' ')}",
                help_text=help_text,
                initial=routing["gate"].get(name),
            )
        for name in LOSS_FIELDS:
            self.fields[f"loss_{name}"] = forms.FloatField(
                label=f"Loss weight: {name.replace('_', ' ')}",
                initial=routing["loss"].get(name),
                min_value=0,
            )
        self.fields["seed"].initial = routing.get("seed", 0)
        lm = routing.get("lm") or to_dict(LMRouting())
        for name, (kind, help_text) in LM_FIELDS.items():
            options = {"choices": [(c, c) for c in LM_CHOICES[name]]} if name in LM_CHOICES else {}
            self.fields[f"lm_{name}"] = kind(
                label=f"Language model: {name.replace('_', ' ')}",
                help_text=help_text + " (language-model mixtures)",
                initial=lm.get(name),
                required=False,
                **options,
            )
        classifier = routing.get("classifier") or to_dict(ClassifierRouting())
        self.fields["classifier_gate_features"] = forms.ChoiceField(
            label="Classifier: gate features",
            choices=[(c, c) for c in mixtures.GATE_FEATURES],
            initial=classifier.get("gate_features"),
            required=False,
            help_text="what the gate reads of the base model: mean-cls-middle (the last "
            "layer's mean and [CLS] vector and the middle layer's mean, one pass) or mean "
            "(the last layer's mean, as the experts) (classification mixtures)",
        )
        for name, help_text in CLASSIFIER_FIELDS.items():
            self.fields[f"classifier_{name}"] = forms.BooleanField(
                label=f"Classifier: {name.replace('_', ' ')}",
                help_text=help_text + " (classification mixtures)",
                initial=classifier.get(name),
                required=False,
            )
        # Left out, the kind stays what it is (classification for a new mixture).
        self.fields["task_type"].required = False
        if self.instance.pk:
            self.fields["slug"].disabled = True  # addresses and Hub links keep working

    def clean_tolerance(self):
        return _checked(mixtures.clean_tolerance, self.cleaned_data["tolerance"])

    def clean_max_upload_bytes(self):
        return _checked(mixtures.clean_max_upload, self.cleaned_data["max_upload_bytes"])

    def clean_hub_repo_id(self):
        return _checked(mixtures.clean_repo_id, self.cleaned_data["hub_repo_id"])

    def clean_base_model(self):
        base = self.cleaned_data["base_model"]
        return _checked(lambda b: mixtures.check_base_change(self.instance, b) or b, base)

    def clean(self):
        data = super().clean()
        task_type = data.get("task_type") or self.instance.task_type
        if data.get("base_model") is not None:
            try:
                mixtures.check_kind(self.instance, task_type, data["base_model"])
            except ValueError as exc:
                self.add_error("task_type", str(exc))
        given = {
            "gate": {n: data.get(f"gate_{n}") for n in GATE_FIELDS},
            "loss": {n: data.get(f"loss_{n}") for n in LOSS_FIELDS},
            "seed": data.get("seed"),
        }
        if task_type == "causal-lm":
            lm = {n: data.get(f"lm_{n}") for n in LM_FIELDS}
            given["lm"] = {n: v for n, v in lm.items() if v not in (None, "")}
        else:
            given["classifier"] = {n: bool(data.get(f"classifier_{n}")) for n in CLASSIFIER_FIELDS}
            if data.get("classifier_gate_features"):
                given["classifier"]["gate_features"] = data["classifier_gate_features"]
        if None not in given["gate"].values() and None not in given["loss"].values():
            try:
                self.instance.routing = mixtures.clean_routing(given, task_type)
            except ValueError as exc:
                self.add_error(None, str(exc))
        return data


class DomainForm(forms.ModelForm):
    """A domain's name (when new), description and, if the maintainer declares them, its
    labels in their documented order."""

    labels_text = forms.CharField(
        label="Labels",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="optional: the labels in their documented order, separated by commas; "
        "empty takes them from the data, sorted",
    )

    class Meta:
        model = Domain
        fields = ["name", "description"]

    def __init__(self, *args, mixture, **kwargs):
        super().__init__(*args, **kwargs)
        self.mixture = self.instance.mixture = mixture
        if self.instance.pk:
            self.fields["name"].disabled = True  # experts and compositions name it
            if self.instance.labels_declared:
                self.fields["labels_text"].initial = ", ".join(self.instance.labels)

    def clean_name(self):
        name = self.cleaned_data["name"]
        if name == "new":
            raise forms.ValidationError("'new' is reserved; pick another name")
        others = self.mixture.domains.exclude(pk=self.instance.pk)
        if others.filter(name=name).exists():
            raise forms.ValidationError("this mixture already has a domain of that name")
        return name

    def clean_labels_text(self):
        text = self.cleaned_data["labels_text"].strip()
        labels = _checked(mixtures.clean_labels, text) if text else None
        self.labels = _checked(lambda x: mixtures.check_domain_labels(self.instance, x), labels)
        return labels

    def save(self, commit=True):
        domain = super().save(commit=False)
        domain.mixture = self.mixture
        domain.labels_declared = self.cleaned_data.get("labels_text") is not None
        domain.labels = self.labels
        if commit:
            domain.save()
        return domain
