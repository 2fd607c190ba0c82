"""Mixtures, domains, experts, compositions and jobs."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.files.storage import Storage, default_storage
from django.db import models
from django.urls import reverse

from routing.basemodels import BaseSpec
from routing.kinds import DEFAULT_KIND, describe
from routing.kinds import choices as kind_choices


def private_storage() -> Storage:
    """The hub's storage (STORAGES["default"]: files under MEDIA_ROOT, or a bucket), which
    no URL serves by itself: downloads go through views that check who asks."""
    return default_storage


def expert_upload_to(instance, filename: str) -> str:
    return f"experts/{uuid.uuid4().hex}.safetensors"


def domain_data_to(instance, filename: str) -> str:
    return f"domains/{uuid.uuid4().hex}.jsonl"


def default_routing() -> dict:
    """The routing settings of a new mixture of the default kind."""
    return describe(DEFAULT_KIND).default_routing()


def default_kind() -> str:
    return DEFAULT_KIND


def kind_field(**options) -> models.CharField:
    """A kind of mixture (`routing.kinds`): its choices are read from the kinds when asked
    for, so a new kind needs no migration."""
    return models.CharField(max_length=30, choices=kind_choices, default=default_kind, **options)


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


class CompositionQuerySet(models.QuerySet):
    def current(self) -> models.QuerySet:
        """The mixture's current composition (one per mixture): `.current().first()`."""
        return self.filter(is_current=True)


class Composition(models.Model):
    class Publish(models.TextChoices):
        NONE = "none"
        QUEUED = "queued"
        PUBLISHED = "published"
        FAILED = "failed"

    mixture = models.ForeignKey(Mixture, on_delete=models.CASCADE, related_name="compositions")
    version = models.PositiveIntegerField()
    experts = models.ManyToManyField(Expert, related_name="compositions")
    expert_shas = models.JSONField(default=list, help_text="the exact expert set, in gate order")
    folder = models.CharField(max_length=300, blank=True, help_text="prefix in the storage")
    metrics = models.JSONField(default=dict, blank=True)
    contributions = models.JSONField(default=dict, blank=True)
    is_current = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    hub_status = models.CharField(max_length=20, choices=Publish.choices, default=Publish.NONE)
    hub_repo = models.CharField(max_length=200, blank=True, help_text="where it was published")
    hub_commit = models.CharField(max_length=64, blank=True)
    hub_url = models.URLField(blank=True)
    hub_error = models.TextField(blank=True)

    objects = CompositionQuerySet.as_manager()

    class Meta:
        ordering = ["mixture", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["mixture", "version"], name="unique_version"),
        ]

    def __str__(self) -> str:
        return f"{self.mixture.slug} v{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("composition", args=[self.mixture.slug, self.version])


class Job(models.Model):
    class Action(models.TextChoices):
        VALIDATE = "validate"
        RETRAIN = "retrain"
        PUBLISH = "publish"
        EXPORT = "export"
        GENERATE = "generate"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    action = models.CharField(max_length=20, choices=Action.choices)
    mixture = models.ForeignKey(Mixture, on_delete=models.CASCADE, related_name="jobs")
    expert = models.ForeignKey(
        Expert, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    composition = models.ForeignKey(
        Composition, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="when the broker last took its message"
    )
    owner = models.CharField(
        max_length=200, blank=True, help_text="host:pid:start:thread of the worker holding it"
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="requested_jobs",
        help_text="who asked for it (generation from a composition's page)",
    )
    request = models.JSONField(default=dict, blank=True, help_text="what was asked (a prompt)")
    result = models.JSONField(default=dict, blank=True, help_text="what came of it (a text)")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "action"], name="job_status_action")]

    def __str__(self) -> str:
        return f"{self.action} #{self.pk} ({self.status}, {self.progress} %)"


class ScheduledRun(models.Model):
    """When a periodic task last ran, so that two beat schedulers do not double it."""

    name = models.CharField(max_length=100, unique=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} (ran {self.runs} times, last {self.last_run_at})"
