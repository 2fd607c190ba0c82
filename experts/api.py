"""REST API: the same capabilities as the pages, with per-action permissions."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db.models import Prefetch
from django.db.models.fields.json import KeyTransform
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, parsers, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from hub.schema import ErrorSerializer
from routing.metrics import matrix_rows

from .models import Composition, Domain, Expert, Job, Mixture
from .queries import visible_experts, visible_jobs
from .services.upload import (
    UploadError,
    UploadRequest,
    accept_upload,
    parse_adapter_config,
    too_large,
)
from .tasks_api import enqueue_validation

NOT_BLANK = RegexValidator(r"\S", "may not be blank")


class DomainSerializer(serializers.ModelSerializer):
    mixture = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Domain
        fields = ["id", "mixture", "name", "description", "labels", "router_count", "eval_count"]


class CurrentCompositionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    url = serializers.CharField(help_text="its API address")


class MixtureSerializer(serializers.ModelSerializer):
    base_model = serializers.CharField(source="base_model.name", read_only=True)
    domains = DomainSerializer(many=True, read_only=True)
    current_composition = serializers.SerializerMethodField()

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
            "task_type",
            "routing",
            "tolerance",
            "upload_quota",
            "max_upload_bytes",
            "hub_repo_id",
            "publish_automatically",
            "domains",
            "current_composition",
            "created_at",
        ]


class ExpertSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    mixture = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    domain = serializers.CharField(source="domain.name", read_only=True)

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
        try:
            return parse_adapter_config(f)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


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


class CompositionSerializer(serializers.ModelSerializer):
    mixture = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    routing = serializers.SerializerMethodField()

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
        ]

    download_url = serializers.SerializerMethodField()

    def get_download_url(self, obj) -> str:
        from django.urls import reverse

        url = reverse("composition-download", args=[obj.mixture.slug, obj.version])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class CompositionSummarySerializer(CompositionSerializer):
    """A composition in a list: its scores and publication, not its per-expert records
    (routing matrix, contributions, expert set), which the detail answer holds."""

    overall = serializers.JSONField(read_only=True, help_text="overall held-out scores")
    domains = serializers.JSONField(read_only=True, help_text="held-out scores per domain")

    class Meta(CompositionSerializer.Meta):
        fields = [
            f for f in CompositionSerializer.Meta.fields
            if f not in ("expert_shas", "metrics", "routing", "contributions")
        ] + ["overall", "domains"]  # fmt: skip


class JobSerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "mixture",
            "expert",
            "composition",
            "status",
            "progress",
            "message",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]


class UploadFailed(APIException):
    def __init__(self, error: UploadError):
        self.status_code = error.status
        self.wait = error.retry_after  # DRF sends it as Retry-After
        super().__init__(detail={"detail": error.message, "code": error.code})


BY_MIXTURE = OpenApiParameter(
    "mixture", str, description="only those of the mixture with this slug"
)
BY_DOMAIN = OpenApiParameter("domain", str, description="only those of the domain of this name")


class HubViewSet(viewsets.GenericViewSet):
    # Any path segment reaches the view, so that `/api/jobs/1.5/` is the API's own JSON
    # 404 rather than the site's HTML page (the router's default stops at a dot).
    lookup_value_regex = "[^/]+"
    mixture_field = "mixture__slug"  # what `?mixture=<slug>` filters a list on
    domain_field = None  # and `?domain=<name>`, where a list has domains

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if self.action != "list":
            return queryset
        params = self.request.query_params
        if "mixture" in params:
            queryset = queryset.filter(**{self.mixture_field: params["mixture"]})
        if self.domain_field and "domain" in params:
            queryset = queryset.filter(**{self.domain_field: params["domain"]})
        return queryset


class MixtureViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, HubViewSet):
    queryset = Mixture.objects.select_related("base_model").prefetch_related(
        "domains",
        Prefetch(
            "compositions",
            queryset=Composition.objects.filter(is_current=True).only("mixture_id", "version"),
            to_attr="current",
        ),
    )
    serializer_class = MixtureSerializer
    mixture_field = "slug"
    lookup_field = "slug"


@extend_schema_view(list=extend_schema(parameters=[BY_MIXTURE]))
class DomainViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, HubViewSet):
    queryset = Domain.objects.select_related("mixture")
    serializer_class = DomainSerializer


@extend_schema_view(list=extend_schema(parameters=[BY_MIXTURE, BY_DOMAIN]))
class ExpertViewSet(
    mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, HubViewSet
):
    """Experts a user may see; upload with multipart POST; owners retire theirs."""

    serializer_class = ExpertSerializer
    parser_classes = [parsers.MultiPartParser, parsers.JSONParser]
    domain_field = "domain__name"

    def get_queryset(self):
        return visible_experts(self.request.user)

    def get_permissions(self):
        if self.action in ("create", "retire"):
            return [permissions.IsAuthenticated()]
        return [permissions.AllowAny()]

    def get_throttles(self):
        if self.action == "create":
            self.throttle_scope = "upload_attempts"
        return super().get_throttles()

    @extend_schema(
        request={"multipart/form-data": ExpertUploadSerializer},
        responses={
            201: ExpertSerializer,
            403: ErrorSerializer,
            409: ErrorSerializer,
            413: ErrorSerializer,
            429: ErrorSerializer,
        },
        description="Upload an expert. 403: quota reached; 409: this file is yours already, "
        "or accepted in the mixture; 413: over the size cap; 429: upload rate reached.",
    )
    def create(self, request, *args, **kwargs):
        data = request.data  # parses the body; the upload handler flags an oversize file
        if getattr(request._request, "upload_too_large", False):
            raise UploadFailed(too_large())
        upload = ExpertUploadSerializer(data=data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        mixture = get_object_or_404(Mixture, slug=data["mixture"])
        domain = get_object_or_404(Domain, mixture=mixture, name=data["domain"])
        try:
            expert = accept_upload(
                request.user,
                UploadRequest(
                    mixture=mixture,
                    domain=domain,
                    name=data["name"],
                    description=data["description"],
                    licence=data["licence"],
                    file=data["file"],
                    adapter_config=data.get("adapter_config"),
                ),
                enqueue=enqueue_validation,
            )
        except UploadError as exc:
            raise UploadFailed(exc) from None
        return Response(ExpertSerializer(expert).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ExpertSerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        expert = self.get_object()
        if expert.owner_id != request.user.pk:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        Expert.objects.filter(pk=expert.pk).update(status=Expert.Status.RETIRED)
        expert.refresh_from_db()
        return Response(ExpertSerializer(expert).data)


@extend_schema_view(list=extend_schema(parameters=[BY_MIXTURE]))
class CompositionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, HubViewSet):
    queryset = Composition.objects.select_related("mixture")
    serializer_class = CompositionSerializer

    def get_queryset(self):
        if self.action == "list":
            return self.queryset.defer("metrics", "contributions", "expert_shas").annotate(
                overall=KeyTransform("overall", "metrics"),
                domains=KeyTransform("domains", "metrics"),
            )
        return self.queryset.prefetch_related("experts")  # names the routing's columns

    def get_serializer_class(self):
        return CompositionSummarySerializer if self.action == "list" else CompositionSerializer

    @extend_schema(request=None, responses={202: JobSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def publish(self, request, pk=None):
        """Queue the composition's publication to the Hugging Face Hub (maintainers)."""
        from .services.publish import publish_refusal
        from .tasks_api import enqueue_publish

        composition = self.get_object()
        if not composition.mixture.is_maintainer(request.user):
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        refusal = publish_refusal(composition.mixture)
        if refusal:
            return Response({"detail": refusal}, status=status.HTTP_409_CONFLICT)
        job = enqueue_publish(composition)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(list=extend_schema(parameters=[BY_MIXTURE]))
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, HubViewSet):
    serializer_class = JobSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return visible_jobs(self.request.user)
