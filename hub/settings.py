"""Settings for MoECollab Hub, all read from the environment (see docs/configuration.md).

With nothing set, the hub runs on the embedded default: SQLite, local media
files and a Celery broker in local folders, so a first run needs no services.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from experts import task_names
from routing.kinds import template_dirs

from .env import env_bool, env_float, env_int, env_list, env_secret, env_str
from .object_storage import default_storage, redirect_downloads

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MOECOLLAB_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hub",
    "experts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself (compressed, cached for ever by name).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The hub's pages, then each kind's own parts of them (routing/kinds/*/templates).
        "DIRS": [BASE_DIR / "templates", *template_dirs()],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Persistent connections suit servers whose worker threads live long (gunicorn's sync
# workers); a server that starts a thread per request (Django's runserver, the test
# live server) would leave one open connection per finished thread, so 0 by default.
_conn_max_age = env_int("DATABASE_CONN_MAX_AGE", 0)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",  # '' as unset
        conn_max_age=_conn_max_age,
        conn_health_checks=_conn_max_age > 0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default is shared by the web server and a worker: each write
    # transaction takes the lock when it begins (so a count-then-insert cannot
    # interleave with another), readers do not block the writer, and a busy
    # database is waited for rather than refused.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("MOECOLLAB_STATIC_ROOT", str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves it (collectstatic fills it)
STORAGES = {
    # Expert files, domain data, compositions and exports: local files under MEDIA_ROOT,
    # or an S3-compatible bucket (MOECOLLAB_STORAGE=s3; see hub/object_storage.py).
    "default": default_storage(),
    # With DJANGO_DEBUG off, `manage.py collectstatic` writes hashed, compressed copies
    # that whitenoise serves with far-future caching; in development they are served as is.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env_str("MOECOLLAB_MEDIA_ROOT", str(VAR_DIR / "media")))
MOECOLLAB_REDIRECT_DOWNLOADS = redirect_downloads()

# Uploads: every file goes to a temporary file on disk (never held in memory),
# and the streaming handler refuses a body over the cap as it arrives.
MOECOLLAB_MAX_UPLOAD_BYTES = env_int("MOECOLLAB_MAX_UPLOAD_BYTES", 256 * 1024 * 1024)
# Experts a user may store per hour (what was stored counts, refusals do not).
MOECOLLAB_UPLOADS_PER_HOUR = env_int("MOECOLLAB_UPLOADS_PER_HOUR", 30)
FILE_UPLOAD_HANDLERS = [
    "hub.uploads.CappedUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640

# Log-in and password-reset attempts (django-ratelimit, counted in the cache):
# "N/15m" allows N POSTs per 15-minute window.
MOECOLLAB_RATE_LIMITS = {
    "login_per_account": env_str("MOECOLLAB_LOGIN_RATE_ACCOUNT", "10/15m"),
    "login_per_address": env_str("MOECOLLAB_LOGIN_RATE_ADDRESS", "50/15m"),
    "password_reset_per_account": env_str("MOECOLLAB_RESET_RATE_ACCOUNT", "3/h"),
    "password_reset_per_address": env_str("MOECOLLAB_RESET_RATE_ADDRESS", "20/h"),
}
RATELIMIT_USE_CACHE = "default"
RATELIMIT_IP_META_KEY = env_str("MOECOLLAB_CLIENT_IP_HEADER") or None  # behind a proxy

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"
EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "MoECollab Hub <hub@localhost>")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PAGINATION_CLASS": "experts.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "experts.schema.HubAutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON", "120/min"),
        "user": env_str("API_THROTTLE_USER", "600/min"),
        # every upload attempt, refused or not; stored uploads have their own limit
        "upload_attempts": env_str("API_THROTTLE_UPLOAD_ATTEMPTS", "300/hour"),
        # generating from a language-model composition (a worker's time per prompt)
        "generate": env_str("API_THROTTLE_GENERATE", "30/hour"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MoECollab Hub API",
    "DESCRIPTION": "Mixtures, domains, experts, compositions and jobs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The routing library's caches of base features and expert outputs.
MOECOLLAB_CACHE_DIR = Path(env_str("MOECOLLAB_CACHE", str(VAR_DIR / "cache")))
# A worker's copies of stored files that are not on its disk (object storage), by sha256.
MOECOLLAB_BLOB_CACHE_BYTES = env_int("MOECOLLAB_BLOB_CACHE_BYTES", 10 * 1024**3)
# How long a stored export file that no export names yet is kept (a writer's manifest
# comes last), before `prune_exports` may delete it (experts/services/shared.py).
MOECOLLAB_SHARED_GRACE_SECONDS = env_int("MOECOLLAB_SHARED_GRACE_SECONDS", 24 * 3600)

# --- Publishing to the Hugging Face Hub ---------------------------------------
# The token is read from MOECOLLAB_HF_TOKEN, the file MOECOLLAB_HF_TOKEN_FILE names,
# or HF_TOKEN. It stays in this process: tasks carry job ids, never the token.
MOECOLLAB_HF_TOKEN = env_secret("MOECOLLAB_HF_TOKEN", "HF_TOKEN")
MOECOLLAB_HF_ENDPOINT = (env_str("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
MOECOLLAB_HF_NAMESPACE = env_str("MOECOLLAB_HF_NAMESPACE", "")  # for mixtures without a repo id
MOECOLLAB_HF_PRIVATE = env_bool("MOECOLLAB_HF_PRIVATE", False)  # visibility of new repositories
MOECOLLAB_PUBLISH_TRIES = env_int("MOECOLLAB_PUBLISH_TRIES", 5)
MOECOLLAB_PUBLISH_BACKOFF_SECONDS = env_float("MOECOLLAB_PUBLISH_BACKOFF_SECONDS", 2.0)
MOECOLLAB_PUBLISH_SOFT_LIMIT = env_int("MOECOLLAB_PUBLISH_SOFT_LIMIT", 1800)

# --- Trying language-model compositions ------------------------------------------
MOECOLLAB_MAX_NEW_TOKENS = env_int("MOECOLLAB_MAX_NEW_TOKENS", 128)  # per generation
MOECOLLAB_GENERATE_RATE = env_str("MOECOLLAB_GENERATE_RATE", "30/h")  # per user, from the page
MOECOLLAB_GENERATE_SOFT_LIMIT = env_int("MOECOLLAB_GENERATE_SOFT_LIMIT", 300)
# Where model cards link back to (the site's public address).
MOECOLLAB_SITE_URL = (env_str("MOECOLLAB_SITE_URL") or "http://127.0.0.1:8000").rstrip("/")

# --- Celery -----------------------------------------------------------------
# Results are never read (a job's outcome is its Job row), so no result backend.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A message is redelivered if not acknowledged within this time: longer than any task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
        "socket_connect_timeout": 2,
    }
else:
    # Embedded default: kombu's filesystem transport, shared by every process
    # that sees the same folder; no server to run. It deletes a message when a
    # worker fetches it, so a killed worker's job is recovered from its Job row.
    _broker = VAR_DIR / "broker"
    for _folder in (_broker / "queue", _broker / "processed", _broker / "control"):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "queue"),
        "data_folder_out": str(_broker / "queue"),
        "processed_folder": str(_broker / "processed"),
        "control_folder": str(_broker / "control"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_DEFAULT_QUEUE = "default"
MOECOLLAB_RECOVER_SECONDS = env_float("MOECOLLAB_RECOVER_SECONDS", 60.0)
CELERY_BEAT_SCHEDULE = {
    "recover-jobs": {
        "task": task_names.RECOVER,
        "schedule": MOECOLLAB_RECOVER_SECONDS,
        "options": {"queue": "default", "expires": MOECOLLAB_RECOVER_SECONDS},
    },
}
MOECOLLAB_VALIDATION_SOFT_LIMIT = env_int("MOECOLLAB_VALIDATION_SOFT_LIMIT", 900)
MOECOLLAB_RETRAIN_SOFT_LIMIT = env_int("MOECOLLAB_RETRAIN_SOFT_LIMIT", 900)
# A running job's worker writes a heartbeat this often; one silent this long is dead.
MOECOLLAB_HEARTBEAT_SECONDS = env_float("MOECOLLAB_HEARTBEAT_SECONDS", 10.0)
MOECOLLAB_STALE_JOB_SECONDS = env_int("MOECOLLAB_STALE_JOB_SECONDS", 60)
# A queued job whose message was sent this long ago and never started is sent again.
MOECOLLAB_RESEND_QUEUED_SECONDS = env_int("MOECOLLAB_RESEND_QUEUED_SECONDS", 600)
MOECOLLAB_RETRAIN_COALESCE_SECONDS = env_int("MOECOLLAB_RETRAIN_COALESCE_SECONDS", 5)
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 600)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 660)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 4_000_000)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# --- Cache: rate limits and throttles ---------------------------------------------
# With Redis every web process counts against the same limits; the embedded
# default runs one web process, whose memory is then the shared place. A Redis
# outage must not take the site down with it: the cache then answers "empty"
# (limits fail open, logged) instead of raising into every request.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": env_str("CACHE_URL") or REDIS_URL,
            "KEY_PREFIX": "moecollab",
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
    # Sessions are read from Redis and written through to the database, which stays
    # the truth: every web process sees them, and a Redis outage logs no one out.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
RATELIMIT_FAIL_OPEN = True

# --- Production hardening (on when DJANGO_DEBUG is off) ----------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# LOG_FORMAT=json writes one JSON object a line (for a log collector); text otherwise.
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is not one of: text, json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"},
        "json": {"()": "hub.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
