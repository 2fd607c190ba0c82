"""Base models, mixtures and their domains."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from routing.basemodels import BaseSpec
from routing.kinds import describe

from .fields import default_routing, domain_data_to, kind_field, private_storage


class BaseModel(models.Model):
    """A frozen backbone that a mixture's experts are trained on."""

    name = models.CharField(max_length=200, unique=True, help_text="Hugging Face id or path")
    kind = kind_field(help_text="the kind of mixture it serves: an encoder or a causal LM")
    revision = models.CharField(max_length=100, blank=True)
    hidden_size = models.PositiveIntegerField()
    num_layers = models.PositiveIntegerField()
    intermediate_size = models.PositiveIntegerField()
    q_size = models.PositiveIntegerField(default=0, help_text="causal LMs: q_proj's outputs")
    kv_size = models.PositiveIntegerField(default=0, help_text="causal LMs: k/v_proj's outputs")
    fingerprint = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the weights the workers load"
    )
    licence = models.CharField(max_length=50, default="apache-2.0")

    def __str__(self) -> str:
        return self.name

    def spec(self) -> BaseSpec:
        return BaseSpec(
            self.name,
            self.hidden_size,
            self.num_layers,
            self.intermediate_size,
            q_size=self.q_size,
            kv_size=self.kv_size,
            fingerprint=self.fingerprint,
        )


class Mixture(models.Model):
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT)
    kind = kind_field()
    routing = models.JSONField(default=default_routing, help_text="gate, loss weights, seed")
    tolerance = models.FloatField(
        default=0.02, help_text="what a new expert may cost the other domains (its kind says how)"
    )
    upload_quota = models.PositiveIntegerField(
        default=10, help_text="experts per contributor that are not retired or rejected"
    )
    max_upload_bytes = models.PositiveBigIntegerField(default=64 * 1024 * 1024)
    hub_repo_id = models.CharField(max_length=200, blank=True)
    publish_automatically = models.BooleanField(default=False)
    anchor = models.ForeignKey(
        "Anchor",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the accepted anchor merged into the base (language-model mixtures)",
    )
    maintainers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="maintained_mixtures"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("mixture", args=[self.slug])

    def is_maintainer(self, user) -> bool:
        return user.is_authenticated and (
            user.is_staff or self.maintainers.filter(pk=user.pk).exists()
        )

    @property
    def kind_info(self):
        """What the mixture's kind is (`routing.kinds.KindInfo`): the pages read its facts."""
        return describe(self.kind)

    def base_spec(self) -> BaseSpec:
        """The base as the mixture's experts are trained on it: its anchor merged."""
        import dataclasses

        spec = self.base_model.spec()
        return dataclasses.replace(spec, anchor=self.anchor.sha256) if self.anchor_id else spec


class Domain(models.Model):
    mixture = models.ForeignKey(Mixture, on_delete=models.CASCADE, related_name="domains")
    name = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    labels = models.JSONField(default=list, help_text="the documented label order")
    labels_declared = models.BooleanField(
        default=False,
        help_text="the maintainer set the labels: data may not add others, and may lack some",
    )
    router_data = models.FileField(upload_to=domain_data_to, storage=private_storage, blank=True)
    eval_data = models.FileField(upload_to=domain_data_to, storage=private_storage, blank=True)
    router_count = models.PositiveIntegerField(default=0)
    eval_count = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=200, blank=True, help_text="where the data came from")

    class Meta:
        ordering = ["mixture", "name"]
        constraints = [
            models.UniqueConstraint(fields=["mixture", "name"], name="unique_domain_per_mixture")
        ]

    def __str__(self) -> str:
        return f"{self.mixture.slug}/{self.name}"
