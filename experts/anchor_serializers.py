"""A mixture's anchor in the API: what it answers of one, and what an upload sends."""

from __future__ import annotations

from rest_framework import serializers

from .models import Anchor
from .serializing import _absolute, _checked
from .services.uploads import parse_adapter_config


class AnchorSerializer(serializers.ModelSerializer):
    mixture = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    job = serializers.SerializerMethodField(help_text="its validation job, latest first")
    download_url = serializers.SerializerMethodField(
        help_text="the file as stored (accepted anchors only)"
    )
    peft_download_url = serializers.SerializerMethodField(
        help_text="a zipped PEFT adapter folder for PeftModel.from_pretrained (accepted only)"
    )

    def get_job(self, obj) -> int | None:
        return obj.jobs.order_by("-pk").values_list("pk", flat=True).first()

    def _download(self, obj, fmt: str) -> str | None:
        from django.urls import reverse

        if obj.status != Anchor.Status.ACCEPTED:
            return None
        url = reverse("anchor-download", args=[obj.mixture.slug])
        return _absolute(self, url + ("?as=peft" if fmt == "peft" else ""))

    def get_download_url(self, obj) -> str | None:
        return self._download(obj, "safetensors")

    def get_peft_download_url(self, obj) -> str | None:
        return self._download(obj, "peft")

    class Meta:
        model = Anchor
        fields = [
            "id",
            "mixture",
            "owner",
            "name",
            "status",
            "sha256",
            "size",
            "source",
            "num_parameters",
            "target_modules",
            "report",
            "job",
            "download_url",
            "peft_download_url",
            "created_at",
        ]
        read_only_fields = fields


class AnchorUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        help_text="the anchor: `python -m routing lm anchor`'s file, or a PEFT adapter's "
        "adapter_model.safetensors"
    )
    adapter_config = serializers.FileField(
        required=False, help_text="adapter_config.json, with a PEFT adapter"
    )
    name = serializers.CharField(max_length=100, required=False, default="anchor")

    def validate_adapter_config(self, f):
        return _checked(parse_adapter_config, f)
