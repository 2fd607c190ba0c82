"""REST API: the same capabilities as the pages, with per-action permissions."""

from __future__ import annotations

from django.db.models import Prefetch
from django.db.models.fields.json import KeyTransform
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from routing.data import DatasetError

from .anchor_api import AnchorActions
from .models import Composition, Domain, Mixture
from .queries import visible_experts, visible_jobs
from .schema import ErrorSerializer
from .serializers import (
    CompositionSerializer,
    CompositionSummarySerializer,
    DomainSerializer,
    ExpertSerializer,
    ExpertUploadSerializer,
    GenerateSerializer,
    JobSerializer,
    MixtureSerializer,
)
from .services.domains import import_domain_file
from .services.experts import may_retry, retire, retry
from .services.generation import enqueue_generation
from .services.mixtures import create_mixture
from .services.publishing import enqueue_publish, publish_refusal
from .services.uploads import UploadError, UploadRequest, accept_upload
from .uploading import UploadFailed, api_data
from .writes import DomainDataSerializer, DomainWriteSerializer, MixtureWriteSerializer

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


class MaintainedWrites:
    """Create and partial-update for maintainers: writing needs a login, changing an
    object needs to maintain its mixture (anyone else gets 404, as for what they may not
    see), and the answer is the object as it reads."""

    write_serializer_class = None
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_permissions(self):
        writes = ("create", "partial_update", "data", "copy", "anchors")
        if self.action in writes or (self.action == "anchor" and self.request.method == "POST"):
            return [permissions.IsAuthenticated()]
        return [permissions.AllowAny()]

    def maintained(self, mixture):
        if not mixture.is_maintainer(self.request.user):
            raise NotFound("No such mixture.")
        return mixture

    def answer(self, instance, code=status.HTTP_200_OK):
        instance = self.get_queryset().get(pk=instance.pk)
        return Response(
            self.serializer_class(instance, context={"request": self.request}).data, status=code
        )


class MixtureViewSet(
    AnchorActions, MaintainedWrites, mixins.ListModelMixin, mixins.RetrieveModelMixin, HubViewSet
):
    queryset = Mixture.objects.select_related("base_model", "anchor").prefetch_related(
        "domains",
        Prefetch(
            "compositions",
            queryset=Composition.objects.current().only("mixture_id", "version"),
            to_attr="current",
        ),
    )
    serializer_class = MixtureSerializer
    mixture_field = "slug"
    lookup_field = "slug"

    @extend_schema(request=MixtureWriteSerializer, responses={201: MixtureSerializer})
    def create(self, request, *args, **kwargs):
        """Open a mixture; you maintain it."""
        write = MixtureWriteSerializer(data=request.data)
        write.is_valid(raise_exception=True)
        mixture = create_mixture(request.user, Mixture(**write.validated_data))
        return self.answer(mixture, status.HTTP_201_CREATED)

    @extend_schema(request=MixtureWriteSerializer, responses={200: MixtureSerializer})
    def partial_update(self, request, *args, **kwargs):
        """Change a mixture's settings (its maintainers)."""
        mixture = self.maintained(self.get_object())
        write = MixtureWriteSerializer(mixture, data=request.data, partial=True)
        write.is_valid(raise_exception=True)
        return self.answer(write.save())


@extend_schema_view(list=extend_schema(parameters=[BY_MIXTURE]))
class DomainViewSet(MaintainedWrites, mixins.ListModelMixin, mixins.RetrieveModelMixin, HubViewSet):
    queryset = Domain.objects.select_related("mixture")
    serializer_class = DomainSerializer

    @extend_schema(request=DomainWriteSerializer, responses={201: DomainSerializer})
    def create(self, request, *args, **kwargs):
        """Add a domain to a mixture you maintain."""
        write = DomainWriteSerializer(data=request.data)
        write.is_valid(raise_exception=True)
        self.maintained(write.validated_data["mixture"])
        return self.answer(write.save(), status.HTTP_201_CREATED)

    @extend_schema(request=DomainWriteSerializer, responses={200: DomainSerializer})
    def partial_update(self, request, *args, **kwargs):
        """Change a domain's description or labels (its mixture's maintainers)."""
        domain = self.get_object()
        self.maintained(domain.mixture)
        write = DomainWriteSerializer(domain, data=request.data, partial=True)
        write.is_valid(raise_exception=True)
        return self.answer(write.save())

    @extend_schema(
        request={"multipart/form-data": DomainDataSerializer},
        responses={200: DomainSerializer, 413: ErrorSerializer},
    )
    @action(detail=True, methods=["post"], parser_classes=[parsers.MultiPartParser])
    def data(self, request, pk=None):
        """Replace the domain's data (CSV `text,label` or JSONL), split into router and
        held-out parts; the held-out part is never shown."""
        domain = self.get_object()
        self.maintained(domain.mixture)
        upload = DomainDataSerializer(data=api_data(request))
        upload.is_valid(raise_exception=True)
        f = upload.validated_data["file"]
        try:
            import_domain_file(domain, f.read(), f.name)
        except DatasetError as exc:
            raise ValidationError({"file": [str(exc)]}) from None
        return self.answer(domain)


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
        if self.action in ("create", "retire", "retry"):
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
        upload = ExpertUploadSerializer(data=api_data(request))
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        mixture = get_object_or_404(Mixture, slug=data["mixture"])
        domain = get_object_or_404(Domain, mixture=mixture, name=data["domain"])
        try:
            expert = accept_upload(request.user, UploadRequest.of(mixture, domain, data))
        except UploadError as exc:
            raise UploadFailed(exc) from None
        return Response(ExpertSerializer(expert).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ExpertSerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        expert = self.get_object()
        if expert.owner_id != request.user.pk:
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        retire(expert)
        expert.refresh_from_db()
        return Response(ExpertSerializer(expert).data)

    @extend_schema(
        request=None,
        responses={202: JobSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
        description="Validate a failed expert again (its owner or its mixture's "
        "maintainers): a worker died or the hub failed while it was validated, so its file "
        "was never judged. 409: the expert is not failed. A failed expert counts against "
        "its owner's quota until it is judged or retired.",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        expert = self.get_object()
        if not may_retry(request.user, expert):
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        job = retry(expert)
        if job is None:
            expert.refresh_from_db()
            return Response(
                {
                    "detail": f"the expert is {expert.status}: only a failed expert is "
                    "validated again",
                    "code": "not_failed",
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


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

    def get_throttles(self):
        if self.action == "generate":
            self.throttle_scope = "generate"
        return super().get_throttles()

    @extend_schema(
        request=GenerateSerializer,
        responses={202: JobSerializer, 409: ErrorSerializer, 429: ErrorSerializer},
        description="Generate from a composition whose kind generates text (a language "
        "model): a worker routes the prompt and generates; poll the job "
        "(`/api/jobs/{id}/`) for `result.text` and `result.experts`. 409: the "
        "composition does not generate.",
    )
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def generate(self, request, pk=None):
        composition = self.get_object()
        info = composition.mixture.kind_info
        if not info.generates:
            return Response(
                {
                    "detail": f"this composition is a {info.title.lower()}: it does not "
                    "generate text",
                    "code": "does_not_generate",
                },
                status=status.HTTP_409_CONFLICT,
            )
        ask = GenerateSerializer(data=request.data)
        ask.is_valid(raise_exception=True)
        job = enqueue_generation(composition, request.user, ask.validated_data)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: JobSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def publish(self, request, pk=None):
        """Queue the composition's publication to the Hugging Face Hub (maintainers)."""
        composition = self.get_object()
        if not composition.mixture.is_maintainer(request.user):
            return Response({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
        refusal = publish_refusal(composition.mixture)
        if refusal:
            return Response({"detail": refusal}, status=status.HTTP_409_CONFLICT)
        job = enqueue_publish(composition)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


BY_EXPERT = OpenApiParameter("expert", int, description="only those of the expert with this id")


@extend_schema_view(list=extend_schema(parameters=[BY_MIXTURE, BY_EXPERT]))
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, HubViewSet):
    serializer_class = JobSerializer
    permission_classes = [permissions.IsAuthenticated]
    checks_query = True  # ?expert= must be an id: 400 otherwise (the schema says so)

    def get_queryset(self):
        jobs = visible_jobs(self.request.user)
        expert = self.request.query_params.get("expert")
        if self.action == "list" and expert is not None:
            if not (expert.isdigit() and len(expert) <= 18):
                raise ValidationError({"expert": "an expert's id (a number)"})
            jobs = jobs.filter(expert_id=int(expert))
        return jobs
