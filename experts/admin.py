from django.contrib import admin

from .models import BaseModel, Composition, Domain, Expert, Job, Mixture


@admin.register(BaseModel)
class BaseModelAdmin(admin.ModelAdmin):
    list_display = ("name", "hidden_size", "num_layers", "licence")


class DomainInline(admin.TabularInline):
    model = Domain
    fields = ("name", "labels", "router_count", "eval_count", "source")
    readonly_fields = ("router_count", "eval_count")
    extra = 0


@admin.register(Mixture)
class MixtureAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "base_model", "kind", "publish_automatically")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("maintainers",)
    inlines = [DomainInline]


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("name", "mixture", "router_count", "eval_count")
    list_filter = ("mixture",)


@admin.register(Expert)
class ExpertAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "mixture", "domain", "architecture", "status", "created_at")
    list_filter = ("status", "architecture", "mixture")
    search_fields = ("name", "owner__username", "sha256")
    readonly_fields = ("sha256", "size", "num_parameters", "created_at", "updated_at")


@admin.register(Composition)
class CompositionAdmin(admin.ModelAdmin):
    list_display = ("mixture", "version", "is_current", "hub_status", "created_at")
    list_filter = ("mixture", "is_current")
    filter_horizontal = ("experts",)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("action", "mixture", "expert", "status", "progress", "message", "created_at")
    list_filter = ("action", "status")
