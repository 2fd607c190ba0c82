"""Experts: what contributors upload."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from .fields import expert_upload_to, private_storage
from .mixtures import Domain, Mixture


class Expert(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded"
        VALIDATING = "validating"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        FAILED = "failed"
        RETIRED = "retired"

    class Architecture(models.TextChoices):
        HEAD = "head"  # an MLP over the base's pooled embedding (classification)
        LORA = "lora"  # a LoRA adapter of the base (with a classifier, for classification)

    class Licence(models.TextChoices):
        APACHE = "apache-2.0", "Apache 2.0"
        MIT = "mit", "MIT"
        CC_BY = "cc-by-4.0", "CC BY 4.0"
        CC_BY_SA = "cc-by-sa-4.0", "CC BY-SA 4.0"
        CC_BY_NC = "cc-by-nc-4.0", "CC BY-NC 4.0"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="experts"
    )
    mixture = models.ForeignKey(Mixture, on_delete=models.CASCADE, related_name="experts")
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="experts")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    licence = models.CharField(max_length=20, choices=Licence.choices, default=Licence.APACHE)
    architecture = models.CharField(max_length=10, choices=Architecture.choices)
    source = models.CharField(max_length=20, default="moecollab", help_text="moecollab or peft")
    file = models.FileField(upload_to=expert_upload_to, storage=private_storage)
    adapter_config = models.JSONField(null=True, blank=True, help_text="PEFT adapter_config.json")
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    num_parameters = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UPLOADED)
    report = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Per owner: one user's pending upload must not tell another it exists.
            models.UniqueConstraint(
                fields=["mixture", "owner", "sha256"], name="unique_expert_file_per_owner"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.architecture}, {self.status})"

    def get_absolute_url(self) -> str:
        return reverse("expert", args=[self.pk])
