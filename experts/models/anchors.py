"""A language-model mixture's anchor: one adapter, trained by a maintainer on public text,
that the mixture merges into its base for every expert and every composition."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from .fields import private_storage


def anchor_upload_to(instance, filename: str) -> str:
    return f"anchors/{uuid.uuid4().hex}.safetensors"


class Anchor(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded"
        VALIDATING = "validating"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        FAILED = "failed"

    mixture = models.ForeignKey("Mixture", on_delete=models.CASCADE, related_name="anchors")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="anchors"
    )
    name = models.CharField(max_length=100, default="anchor")
    file = models.FileField(upload_to=anchor_upload_to, storage=private_storage)
    adapter_config = models.JSONField(null=True, blank=True, help_text="PEFT adapter_config.json")
    source = models.CharField(max_length=20, default="moecollab", help_text="moecollab or peft")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    num_parameters = models.PositiveBigIntegerField(default=0)
    target_modules = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UPLOADED)
    report = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    ACTIVE = (Status.UPLOADED, Status.VALIDATING)  # waiting for a verdict

    def __str__(self) -> str:
        return f"anchor {self.sha256[:12]} of {self.mixture_id} ({self.status})"
