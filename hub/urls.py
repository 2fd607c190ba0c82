from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from experts import api
from experts.views import anchors, compositions, domains, experts, generation, mixtures

from . import accounts, health, views

router = DefaultRouter()
router.register("mixtures", api.MixtureViewSet)
router.register("domains", api.DomainViewSet)
router.register("experts", api.ExpertViewSet, basename="expert")
router.register("compositions", api.CompositionViewSet)
router.register("jobs", api.JobViewSet, basename="job")

urlpatterns = [
    path("", views.home, name="home"),
    path("m/<slug:slug>/", mixtures.mixture_detail, name="mixture"),
    path("m/<slug:slug>/upload/", experts.upload, name="upload"),
    path("m/<slug:slug>/leaderboard/", mixtures.leaderboard, name="leaderboard"),
    path("m/<slug:slug>/v<int:version>/", compositions.composition_detail, name="composition"),
    path(
        "m/<slug:slug>/domains/<slug:name>/data/",
        domains.domain_data_upload,
        name="domain-data",
    ),
    path(
        "m/<slug:slug>/v<int:version>/download/",
        compositions.composition_download,
        name="composition-download",
    ),
    path(
        "m/<slug:slug>/v<int:version>/download/status.json",
        compositions.download_status,
        name="composition-download-status",
    ),
    path(
        "m/<slug:slug>/v<int:version>/files/<path:name>",
        compositions.composition_file,
        name="composition-file",
    ),
    path("m/<slug:slug>/v<int:version>/pin/", compositions.composition_pin, name="composition-pin"),
    path(
        "m/<slug:slug>/v<int:version>/generate/",
        generation.composition_generate,
        name="composition-generate",
    ),
    path(
        "m/<slug:slug>/v<int:version>/publish/",
        compositions.composition_publish,
        name="publish-composition",
    ),
    path("mixtures/new/", mixtures.mixture_create, name="mixture-create"),
    path("m/<slug:slug>/settings/", mixtures.mixture_settings, name="mixture-settings"),
    path("m/<slug:slug>/anchor/", anchors.anchor_page, name="anchor"),
    path("m/<slug:slug>/anchor/status.json", anchors.anchor_status, name="anchor-status"),
    path("m/<slug:slug>/anchor/download/", anchors.anchor_download, name="anchor-download"),
    path("m/<slug:slug>/copy/", anchors.mixture_copy, name="copy-mixture"),
    path("m/<slug:slug>/domains/new/", domains.domain_create, name="domain-create"),
    path("m/<slug:slug>/domains/<slug:name>/", domains.domain_edit, name="domain-edit"),
    path("m/<slug:slug>/retrain/", mixtures.mixture_retrain, name="mixture-retrain"),
    path("m/<slug:slug>/hub/", mixtures.mixture_hub_settings, name="mixture-hub"),
    path("review/", mixtures.review_queue, name="review"),
    path("experts/<int:pk>/", experts.expert_detail, name="expert"),
    path("experts/<int:pk>/download/", experts.expert_download, name="expert-download"),
    path("experts/<int:pk>/status.json", experts.expert_status, name="expert-status"),
    path("experts/<int:pk>/retire/", experts.expert_retire, name="expert-retire"),
    path("experts/<int:pk>/retry/", experts.expert_retry, name="expert-retry"),
    path("accounts/register/", accounts.register, name="register"),
    path("accounts/profile/", accounts.profile, name="profile"),
    path("accounts/token/", accounts.token_create, name="token-create"),
    path("accounts/token/revoke/", accounts.token_revoke, name="token-revoke"),
    path("accounts/login/", accounts.log_in, name="login"),
    path("accounts/password_reset/", accounts.password_reset, name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("health/", health.health, name="health"),
    path("admin/", admin.site.urls),
]
