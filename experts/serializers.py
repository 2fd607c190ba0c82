"""API serializers: read shapes, the upload form and prompts (maintainers' writes: `writes`)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from routing.report import matrix_rows

from .anchor_serializers import AnchorSerializer
from .models import Composition, Domain, Expert, Job, Mixture
from .serializing import NOT_BLANK, _checked
from .services.generation import clean_request
from .services.uploads import parse_adapter_config


class LookupByName(serializers.SlugRelatedField):
    """An object named in a request (a base model, a mixture's slug). A name with a NUL
    character names nothing (PostgreSQL cannot even compare it): the usual 400."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", ""))
        return super().to_internal_value(data)


class DomainSerializer(serializers.ModelSerializer):
    mixture = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Domain
        fields = [
            "id",
            "mixture",
            "name",
            "description",
            "labels",
            "labels_declared",
            "router_count",
            "eval_count",
        ]


class CurrentCompositionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    url = serializers.CharField(help_text="its API address")


DEPRECATED = "deprecated: the same as `{}`, answered until 0.3"


class MixtureSerializer(serializers.ModelSerializer):
    base_model = serializers.CharField(source="base_model.name", read_only=True)
    domains = DomainSerializer(many=True, read_only=True)
    current_composition = serializers.SerializerMethodField()
    anchor = serializers.SerializerMethodField(help_text="the accepted anchor, if any")
    contract = serializers.SerializerMethodField(
        help_text="what an expert for this mixture must be, generated from its settings"
    )

    @extend_schema_field(AnchorSerializer(allow_null=True))
    def get_anchor(self, obj) -> dict | None:
        if not obj.anchor_id:
            return None
        return AnchorSerializer(obj.anchor, context=self.context).data

    @extend_schema_field(serializers.DictField())
    def get_contract(self, obj) -> dict:
        return obj.kind_info.expert_contract(obj.base_spec(), obj.routing)

    task_type = serializers.CharField(
        source="kind", read_only=True, help_text=DEPRECATED.format("kind")
    )

    @extend_schema_field(CurrentCompositionSerializer(allow_null=True))
    def get_current_composition(self, obj) -> dict | None:
        from django.urls import reverse

        current = next(iter(getattr(obj, "current", [])), None)
        if current is None:
            return None
        url = reverse("composition-detail", args=[current.pk])
        request = self.context.get("request")
        return {
            "id": current.pk,
            "version": current.version,
            "url": request.build_absolute_uri(url) if request else url,
        }

    class Meta:
        model = Mixture
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "base_model",
            "kind",
            "task_type",
            "routing",
            "tolerance",
            "upload_quota",
            "max_upload_bytes",
            "hub_repo_id",
            "publish_automatically",
            "domains",
            "anchor",
            "contract",
            "current_composition",
            "created_at",
        ]


class ExpertSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    mixture = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    domain = serializers.CharField(source="domain.name", read_only=True)
    kind = serializers.CharField(
        source="architecture", read_only=True, help_text=DEPRECATED.format("architecture")
    )

    class Meta:
        model = Expert
        fields = [
            "id",
            "owner",
            "mixture",
            "domain",
            "name",
            "description",
            "licence",
            "architecture",
            "kind",
            "source",
            "sha256",
            "size",
            "num_parameters",
            "status",
            "report",
            "metrics",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ExpertUploadSerializer(serializers.Serializer):
    mixture = serializers.SlugField()
    domain = serializers.CharField(max_length=80, validators=[NOT_BLANK])
    name = serializers.CharField(max_length=100, validators=[NOT_BLANK])
    description = serializers.CharField(required=False, allow_blank=True, default="")
    licence = serializers.ChoiceField(choices=Expert.Licence.choices, default=Expert.Licence.APACHE)
    file = serializers.FileField()
    adapter_config = serializers.FileField(required=False)

    def validate_adapter_config(self, f):
        return _checked(parse_adapter_config, f)


class RoutingSerializer(serializers.Serializer):
    domains = serializers.ListField(child=serializers.CharField(), help_text="matrix rows")
    experts = serializers.ListField(
        child=serializers.DictField(), help_text="matrix columns, in gate order: id, name, sha256"
    )
    matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        help_text="share of each domain's held-out traffic routed to each expert",
    )
    load = serializers.ListField(
        child=serializers.FloatField(), help_text="each expert's share of all traffic"
    )


class FormatSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="light, full or gguf")
    title = serializers.CharField()
    engines = serializers.ListField(child=serializers.CharField(), help_text="what runs it")
    reason = serializers.CharField(allow_null=True, help_text="why it is not offered (null: it is)")
    default = serializers.BooleanField(help_text="what download_url and publishing give")
    ready = serializers.BooleanField(help_text="written: the download starts at once")
    bytes = serializers.IntegerField(allow_null=True, help_text="the download's size, once written")
    url = serializers.CharField(
        required=False, help_text="its zip, or for gguf the file (offered formats only)"
    )
    label = serializers.CharField(
        required=False, help_text='what it downloads as: "light zip", "full zip", "gguf file"'
    )


class CompositionSerializer(serializers.ModelSerializer):
    mixture = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    routing = serializers.SerializerMethodField()
    formats = serializers.SerializerMethodField()

    @extend_schema_field(FormatSerializer(many=True))
    def get_formats(self, obj) -> list[dict]:
        """Every form the composition downloads in, and why any is not offered."""
        from .services.exports import offered_formats

        request = self.context.get("request")
        out = offered_formats(obj)
        for entry in out:
            if "url" in entry and request is not None:
                entry["url"] = request.build_absolute_uri(entry["url"])
        return out

    @extend_schema_field(RoutingSerializer)
    def get_routing(self, obj) -> dict:
        """The routing matrix and loads with their axes named, so that a client need
        not match columns to experts by hand."""
        metrics = obj.metrics or {}
        by_sha = {e.sha256: e for e in obj.experts.all()}
        return {
            "domains": matrix_rows(metrics),
            "experts": [
                {"id": by_sha[s].pk, "name": by_sha[s].name, "sha256": s}
                if s in by_sha
                else {"id": None, "name": None, "sha256": s}
                for s in obj.expert_shas
            ],
            "matrix": metrics.get("routing_matrix", []),
            "load": metrics.get("utilisation", {}).get("load", []),
        }

    class Meta:
        model = Composition
        fields = [
            "id",
            "mixture",
            "version",
            "expert_shas",
            "metrics",
            "routing",
            "contributions",
            "is_current",
            "created_at",
            "hub_status",
            "hub_repo",
            "hub_commit",
            "hub_url",
            "hub_error",
            "download_url",
            "formats",
        ]

    download_url = serializers.SerializerMethodField()

    def get_download_url(self, obj) -> str:
        from django.urls import reverse

        url = reverse("composition-download", args=[obj.mixture.slug, obj.version])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class CompositionSummarySerializer(CompositionSerializer):
    """A composition in a list: its scores and publication, not its per-expert records
    (routing matrix, contributions, expert set) or its formats (each reads the storage),
    which the detail answer holds."""

    overall = serializers.JSONField(read_only=True, help_text="overall held-out scores")
    domains = serializers.JSONField(read_only=True, help_text="held-out scores per domain")

    class Meta(CompositionSerializer.Meta):
        fields = [
            f for f in CompositionSerializer.Meta.fields
            if f not in ("expert_shas", "metrics", "routing", "contributions", "formats")
        ] + ["overall", "domains"]  # fmt: skip


class JobSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(
        source="action", read_only=True, help_text=DEPRECATED.format("action")
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "action",
            "kind",
            "mixture",
            "expert",
            "composition",
            "anchor",
            "status",
            "progress",
            "message",
            "error",
            "attempts",
            "request",
            "result",
            "created_at",
            "started_at",
            "finished_at",
        ]


class GenerateSerializer(serializers.Serializer):
    """A prompt for a language-model composition."""

    prompt = serializers.CharField(trim_whitespace=False, help_text="at most 2,000 characters")
    max_new_tokens = serializers.IntegerField(required=False, help_text="1..128, default 48")
    do_sample = serializers.BooleanField(required=False, help_text="sample (default: greedy)")
    temperature = serializers.FloatField(required=False, help_text="0.05..5, when sampling")
    top_p = serializers.FloatField(required=False, help_text="0.05..1, when sampling")
    seed = serializers.IntegerField(required=False, help_text="of the sampling")

    def validate(self, data):
        return _checked(clean_request, data)
