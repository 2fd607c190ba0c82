from __future__ import annotations

from django import forms

from routing.config import user_settings, value_type
from routing.kinds import KINDS, describe
from routing.kinds.interface import COMMON_SECTIONS, SEED_HELP

from .models import Domain, Expert, Mixture
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
        self.fields["domain"].label_from_instance = domain_label

    def clean_adapter_config(self):
        return clean_adapter_config(self.cleaned_data.get("adapter_config"))


def clean_adapter_config(f) -> dict | None:
    """An uploaded adapter_config.json as a dict (None without one); a form error says
    what is wrong with it."""
    if not f:
        return None
    try:
        return parse_adapter_config(f)
    except ValueError as exc:
        raise forms.ValidationError(str(exc)) from None


class AnchorForm(forms.Form):
    file = forms.FileField(
        help_text="the anchor: python -m routing lm anchor's file, or a PEFT adapter's "
        "adapter_model.safetensors"
    )
    adapter_config = forms.FileField(
        required=False, help_text="adapter_config.json, only for a plain PEFT adapter"
    )

    def clean_adapter_config(self):
        return clean_adapter_config(self.cleaned_data.get("adapter_config"))


LABELS_SHOWN = 12  # labels named beside a domain in a choice; a domain may have 1,000


def domain_label(domain) -> str:
    """A domain as a choice names it: its name and its first labels."""
    if not domain.labels:
        return domain.name
    shown = ", ".join(domain.labels[:LABELS_SHOWN])
    more = len(domain.labels) - LABELS_SHOWN
    return f"{domain.name} ({shown}{f' and {more} more' if more > 0 else ''})"


class DomainDataForm(forms.Form):
    file = forms.FileField()

    def __init__(self, *args, mixture, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = mixture.kind_info.data_formats


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


COMMON = {key for key, _, _ in COMMON_SECTIONS}  # the routing settings every kind has


def routing_fields(kinds) -> dict[str, tuple]:
    """The form fields of the routing settings of these kinds, by form name: each kind's
    sections (`KindInfo.sections`), their fields' help text and bounds from the config
    dataclasses (`routing.config.setting`); a section some kinds lack says whose it is."""
    found: dict[str, tuple] = {}
    for info in kinds:
        for key, cls, title in info.sections():
            for f in user_settings(cls):
                name = f"{key}_{f.name}"
                owners = found.get(name, (None, None, None, []))[3]
                found[name] = (key, f, title, [*owners, info])
    return found


def _form_field(key: str, f, title: str, initial, owners: list, every: int):
    """A setting's form field: the settings every kind has (gate, loss) are required, a
    kind's own may be left empty (its default)."""
    meta, kind = f.metadata, value_type(f)
    help_text = meta["help"]
    if len(owners) < every:
        help_text += " (" + ", ".join(info.title.lower() for info in owners) + " mixtures)"
    options = {"label": f"{title}: {f.name.replace('_', ' ')}", "help_text": help_text}
    options["initial"] = initial
    required = key in COMMON
    if kind is bool:
        return forms.BooleanField(required=False, **options)
    if meta.get("choices"):
        return forms.ChoiceField(
            choices=[("", "(default)")] * (not required) + [(c, c) for c in meta["choices"]],
            required=required,
            **options,
        )
    field = forms.IntegerField if kind is int else forms.FloatField
    return field(required=required, **options)


class MixtureForm(forms.ModelForm):
    """A mixture's settings, routing included, for its maintainers (and its creator): the
    routing fields are those of the mixture's kind, or of every kind for a new mixture."""

    class Meta:
        model = Mixture
        fields = [
            "name",
            "slug",
            "description",
            "kind",
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

    seed = forms.IntegerField(min_value=0, initial=0, help_text=SEED_HELP)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kinds = [self.instance.kind_info] if self.instance.pk else list(KINDS.values())
        routing = self.instance.routing if self.instance.pk else None
        self.routing = routing_fields(kinds)
        defaults = {info.name: info.default_routing() for info in kinds}
        for name, (key, f, title, owners) in self.routing.items():
            default = defaults[owners[0].name][key][f.name]
            initial = ((routing or {}).get(key) or {}).get(f.name, default)
            self.fields[name] = _form_field(key, f, title, initial, owners, len(kinds))
        self.routing_start = next(iter(self.routing), None)
        self.fields["seed"].initial = (routing or {}).get("seed", 0)
        self.order_fields([*self.Meta.fields, *self.routing, "seed"])
        if self.instance.pk:
            self.fields["tolerance"].help_text = self.instance.kind_info.tolerance_help
            self.fields["slug"].disabled = True  # addresses and Hub links keep working
        else:
            self.fields["tolerance"].help_text = "; ".join(
                f"{info.title}: {info.tolerance_help}" for info in KINDS.values()
            )
        # Left out, the kind stays what it is (the default kind for a new mixture).
        self.fields["kind"].required = False

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
        kind = data.get("kind") or self.instance.kind
        data["kind"] = kind
        if data.get("base_model") is not None:
            try:
                mixtures.check_kind(self.instance, kind, data["base_model"])
            except ValueError as exc:
                self.add_error("kind", str(exc))
        info = describe(kind)
        sections = {key for key, _, _ in info.sections()}
        given: dict = {"seed": data.get("seed")}
        for name, (key, f, _, _) in self.routing.items():
            value = data.get(name)
            if key in sections and value not in (None, ""):
                given.setdefault(key, {})[f.name] = value
        if not self.errors:
            try:
                self.instance.routing = mixtures.clean_routing(given, kind, self.instance)
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
