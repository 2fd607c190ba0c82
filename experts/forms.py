from __future__ import annotations

from django import forms

from .models import Domain, Expert, Mixture
from .services.upload import parse_adapter_config


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
        self.fields["domain"].label_from_instance = lambda d: f"{d.name} ({', '.join(d.labels)})"

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
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        value = self.cleaned_data["hub_repo_id"].strip()
        if not value:
            return value
        if value.count("/") != 1:
            raise forms.ValidationError(f"{value!r} is not namespace/name")
        try:
            validate_repo_id(value)
        except HFValidationError as exc:
            raise forms.ValidationError(str(exc).splitlines()[0]) from None
        return value
