"""Compositions, the background jobs that make them, and scheduled runs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from .experts import Expert
from .mixtures import Mixture


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
    anchor = models.ForeignKey(
        "Anchor",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="the anchor merged into the base it was composed on",
    )
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
        GGUF = "gguf"
        GENERATE = "generate"
        VALIDATE_ANCHOR = "validate-anchor"

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
    anchor = models.ForeignKey(
        "Anchor", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
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
