"""API serializers of the maintainers' writes: mixtures, domains and their data."""

from __future__ import annotations

from rest_framework import serializers

from routing.kinds import DEFAULT_KIND, KINDS

from .models import BaseModel, Domain, Mixture
from .serializers import DEPRECATED, LookupByName
from .serializing import NOT_BLANK, _checked
from .services import mixtures


def routing_help() -> str:
    """The routing settings every kind takes, as the API's help text (from the configs)."""
    from routing.config import user_settings

    parts = []
    for info in KINDS.values():
        sections = ", ".join(
            f"{key}: {{{', '.join(f.name for f in user_settings(cls))}}}"
            for key, cls, _ in info.sections()
        )
        parts.append(f"{info.name}: {{{sections}, seed}}")
    return "; ".join(parts) + "; missing keys take their defaults"


class MixtureWriteSerializer(serializers.ModelSerializer):
    """Open a mixture (its creator maintains it) or change its settings."""

    base_model = LookupByName(
        slug_field="name",
        queryset=BaseModel.objects.all(),
        help_text="a base model this hub knows (see the mixtures' `base_model`)",
    )
    routing = serializers.JSONField(required=False, help_text=routing_help())
    name = serializers.CharField(max_length=200, validators=[NOT_BLANK])
    task_type = serializers.ChoiceField(
        choices=list(KINDS), required=False, write_only=True, help_text=DEPRECATED.format("kind")
    )

    class Meta:
        model = Mixture
        fields = [
            "slug",
            "name",
            "description",
            "kind",
            "task_type",
            "base_model",
            "routing",
            "tolerance",
            "upload_quota",
            "max_upload_bytes",
            "hub_repo_id",
            "publish_automatically",
        ]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None:
            fields["slug"].read_only = True  # addresses and Hub links keep working
        return fields

    def validate(self, data):
        instance = self.instance
        alias = data.pop("task_type", None)
        if alias is not None:
            if data.get("kind", alias) != alias:
                raise serializers.ValidationError({"kind": "kind and task_type differ"})
            data["kind"] = alias
        kind = data.get("kind") or (instance.kind if instance else DEFAULT_KIND)
        base = data.get("base_model") or (instance.base_model if instance else None)
        _checked(lambda _: mixtures.check_kind(instance, kind, base), None, "kind")
        routing = data.get("routing", instance.routing if instance else {})
        if "routing" in data or "kind" in data or instance is None:
            data["routing"] = _checked(
                lambda r: mixtures.clean_routing(r, kind, instance), routing, "routing"
            )
        return data

    def validate_tolerance(self, value):
        return _checked(mixtures.clean_tolerance, value)

    def validate_max_upload_bytes(self, value):
        return _checked(mixtures.clean_max_upload, value)

    def validate_hub_repo_id(self, value):
        return _checked(mixtures.clean_repo_id, value)

    def validate_base_model(self, value):
        return _checked(lambda base: mixtures.check_base_change(self.instance, base) or base, value)


class DomainWriteSerializer(serializers.ModelSerializer):
    """Add a domain to a mixture you maintain, or change its description and labels."""

    mixture = LookupByName(slug_field="slug", queryset=Mixture.objects.all())
    labels = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="the labels in their documented order; null takes them from the data, sorted",
    )

    class Meta:
        model = Domain
        fields = ["mixture", "name", "description", "labels"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None:
            fields["mixture"].read_only = True
            fields["name"].read_only = True  # experts and compositions name it
        return fields

    def validate_name(self, value):
        if value == "new":
            raise serializers.ValidationError("'new' is reserved; pick another name")
        return value

    def validate_labels(self, value):
        return None if value is None else _checked(mixtures.clean_labels, value)

    def validate(self, data):
        domain = self.instance or Domain(mixture=data.get("mixture"), name=data.get("name"))
        if (
            self.instance is None
            and Domain.objects.filter(mixture=data["mixture"], name=data["name"]).exists()
        ):
            raise serializers.ValidationError({"name": "the mixture has a domain of that name"})
        if "labels" in data:
            labels = data["labels"]
            data["labels"] = _checked(lambda x: mixtures.check_domain_labels(domain, x), labels)
            data["labels_declared"] = labels is not None
        return data


class DomainDataSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="CSV with a text,label header, or JSONL")
