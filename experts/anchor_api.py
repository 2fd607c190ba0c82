"""The API of a mixture's anchor and of copying a mixture: their serializers and the
actions `MixtureViewSet` takes from `AnchorActions` (`/api/mixtures/{slug}/anchor/`,
`anchor/download/`, `anchors/`, `copy/`)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import parsers, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from .anchor_serializers import AnchorSerializer, AnchorUploadSerializer
from .downloads import ANCHOR_FORMATS, anchor_response
from .models import Mixture
from .schema import ErrorSerializer
from .serializers import MixtureSerializer
from .serializing import NOT_BLANK
from .services.anchors import accept_anchor
from .services.mixtures import copy_mixture
from .services.uploads import UploadError
from .uploading import UploadFailed, api_data


class MixtureCopySerializer(serializers.Serializer):
    slug = serializers.SlugField(
        max_length=80, required=False, help_text="default: the slug with -2, -3... added"
    )
    name = serializers.CharField(max_length=200, required=False, validators=[NOT_BLANK])

    def validate_slug(self, value):
        if Mixture.objects.filter(slug=value).exists():
            raise serializers.ValidationError("a mixture has this slug already")
        return value


class AnchorActions:
    """The anchor and copy actions of the mixtures' viewset."""

    @extend_schema(
        methods=["GET"],
        request=None,
        responses={200: AnchorSerializer, 404: ErrorSerializer},
        description="The mixture's accepted anchor: the adapter merged into its base for "
        "every expert and composition (language-model mixtures). 404: it has none.",
    )
    @extend_schema(
        methods=["POST"],
        request={"multipart/form-data": AnchorUploadSerializer},
        responses={
            202: AnchorSerializer,
            409: ErrorSerializer,
            413: ErrorSerializer,
        },
        description="Upload an anchor (maintainers): a worker validates it on every "
        "domain's held-out data (poll its `job`); accepted, it becomes the mixture's "
        "anchor. 400: not an anchor of this base, or no domain has data yet; 409 "
        "`anchor_frozen`: the mixture has experts (copy it: `POST .../copy/`), or "
        "`anchor_pending`: another anchor waits for its verdict.",
    )
    @action(detail=True, methods=["get", "post"], parser_classes=[parsers.MultiPartParser])
    def anchor(self, request, slug=None):
        mixture = self.get_object()
        if request.method == "GET":
            if not mixture.anchor_id:
                raise NotFound("the mixture has no anchor")
            return Response(AnchorSerializer(mixture.anchor, context={"request": request}).data)
        self.maintained(mixture)
        upload = AnchorUploadSerializer(data=api_data(request))
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        try:
            anchor = accept_anchor(
                request.user, mixture, data["file"], data.get("adapter_config"), data["name"]
            )
        except UploadError as exc:
            raise UploadFailed(exc) from None
        return Response(
            AnchorSerializer(anchor, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "as",
                str,
                enum=list(ANCHOR_FORMATS),
                description="default safetensors; peft: a zipped PEFT adapter folder",
            )
        ],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: ErrorSerializer},
    )
    @action(detail=True, methods=["get"], url_path="anchor/download")
    def anchor_download(self, request, slug=None):
        """Download the mixture's accepted anchor (anyone may)."""
        mixture = self.get_object()
        if not mixture.anchor_id:
            raise NotFound("the mixture has no anchor")
        fmt = request.query_params.get("as", "safetensors")
        if fmt not in ANCHOR_FORMATS:
            raise ValidationError({"as": f"one of {', '.join(ANCHOR_FORMATS)}"})
        return anchor_response(mixture.anchor, fmt)

    @extend_schema(request=None, responses={200: AnchorSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def anchors(self, request, slug=None):
        """Every anchor uploaded to the mixture with its verdict and report (maintainers)."""
        mixture = self.maintained(self.get_object())
        uploads = self.paginate_queryset(mixture.anchors.select_related("owner", "mixture"))
        data = AnchorSerializer(uploads, many=True, context={"request": request}).data
        return self.get_paginated_response(data)

    @extend_schema(request=MixtureCopySerializer, responses={201: MixtureSerializer})
    @action(detail=True, methods=["post"])
    def copy(self, request, slug=None):
        """A new mixture with this one's base, settings and domains (their data copied),
        without its anchor, experts or compositions; you maintain it (maintainers)."""
        mixture = self.maintained(self.get_object())
        ask = MixtureCopySerializer(data=request.data)
        ask.is_valid(raise_exception=True)
        twin = copy_mixture(request.user, mixture, **ask.validated_data)
        return self.answer(twin, status.HTTP_201_CREATED)
