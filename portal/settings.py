"""Fleetgate settings, read from the environment with safe demo defaults.

Every knob a deployment turns is an environment variable; nothing else should need
editing. ``DEBUG`` is off unless the environment turns it on (the demo and the tests
do); with it off, the demo secret key and the demo license key are refused at start-up
(``portal.apps``, ``licensing.apps``). What a production deployment sets is listed in
docs/security.md; ``manage.py check --deploy`` with those settings is clean.
"""

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FLEETGATE_VAR_DIR", BASE_DIR / "var"))

DEMO_SECRET_KEY = "fleetgate-demo-secret-key-do-not-use-in-production"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, "").strip() or default)


SECRET_KEY = os.environ.get("SECRET_KEY", DEMO_SECRET_KEY)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_rq",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "portal",
    "devices",
    "licensing",
    "enrollment",
    "firmware",
    "bench",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files with DEBUG off (deploy.md)
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before CSRF, which is the first to read a POST body: see portal/forms_too_big.py.
    "portal.forms_too_big.TooBigFormMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.tenancy.CurrentOrganizationMiddleware",
    # Last: turns a login that axes refused into the "locked out" page (429).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "portal.tenancy.organization_context",
            ],
        },
    },
]

# --- Database: SQLite (WAL) by default, anything dj-database-url understands when set.
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "fleetgate.sqlite3",
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;"
            ),
            "transaction_mode": "IMMEDIATE",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Services
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
# Where the broker's password and ACL files live, when the portal manages them: written
# again on every gateway change (devices.broker, manage.py broker_config).
BROKER_CONFIG_DIR = os.environ.get("FLEETGATE_BROKER_CONFIG_DIR", "")

RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 900},
}
# django-rq's pages show every organization's jobs: superusers only, mounted once at
# /admin/rq/ by portal/urls.py (not also inside the admin, where any staff could open them).
RQ_SHOW_ADMIN_LINK = False

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth and sessions
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True

# Login throttling (django-axes): the portal's login, the admin's and the API token
# login all go through ``authenticate()``, which the first backend guards. After
# AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# locked for AXES_COOLOFF_TIME, right password or not. Unlock early with
# ``manage.py axes_reset_username NAME`` (or ``axes_reset_ip``, ``axes_reset``).
AUTHENTICATION_BACKENDS = [
    "portal.auth_backends.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "portal.auth_backends.lockout_response"
AXES_CLIENT_IP_CALLABLE = "portal.auth_backends.client_ip"
# Behind a reverse proxy, the client's address is this header's (set it only when the
# proxy overwrites the header: a client could send its own otherwise).
CLIENT_IP_HEADER = os.environ.get("CLIENT_IP_HEADER", "").strip()

# API tokens (portal/tokens.py): stored as SHA-256 digests, valid this many days.
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 90)

# --- HTTPS: a deployment behind TLS turns these on (docs/security.md lists them).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# "HTTP_X_FORWARDED_PROTO" when a proxy terminates TLS and always sets that header.
if proxy_header := os.environ.get("SECURE_PROXY_SSL_HEADER", "").strip():
    SECURE_PROXY_SSL_HEADER = (proxy_header, "https")

# Content-Security-Policy (Django's own middleware): scripts and styles only from the
# portal's static files, or inline with the per-request nonce; nothing from elsewhere.
# The API docs pages need a little more (portal/api_urls.py).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# Request bodies: Django's own 2.5 MB for form fields (a bigger pasted list gets the
# batch form's own error, see portal/forms_too_big.py); files stream to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# Error reports (debug page, e-mails, logs) never show a connection URL's password.
DEFAULT_EXCEPTION_REPORTER = "portal.redaction.RedactingExceptionReporter"

# --- I18N, static
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Production serves what ``collectstatic`` wrote to STATIC_ROOT: names with a content
    # hash (cached for a year by browsers and nginx) and gzip copies, through WhiteNoise.
    # With DEBUG on, files come straight from static/ and the apps: no collectstatic.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    # Firmware images live in their own storage (firmware/models.py reads it by this
    # alias and only through the storage API, so any backend works: point "firmware" at
    # an S3 or other django-storages backend in a deployment's settings).
    "firmware": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": VAR_DIR / "firmware"},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"redact": {"()": "portal.redaction.RedactingFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- REST API (portal/api.py): token or session (with CSRF), JSON only. The browsable
# renderer is left out: its forms would list related rows outside the organization.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so an unauthenticated request gets 401 with a "Token" challenge.
        "portal.tokens.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "portal.api.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Fleetgate API",
    "DESCRIPTION": (
        "Devices, groups, gateways, bulk operations and licenses of one organization. "
        "Authenticate with `Authorization: Token <key>` (manage.py api_token USERNAME) or "
        "the portal's session (with its CSRF token). Pick the organization with the "
        "X-Organization header (slug or id) when you belong to several."
    ),
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # Each app names its own choice sets (portal.api.name_enums, from its AppConfig.ready).
    "ENUM_NAME_OVERRIDES": {},
    # Served from static/ (drf-spectacular-sidecar): the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No badge fetched from the public validator service. No deep links: Swagger UI puts
    # them inside each operation's toggle button, a link within a button (axe:
    # nested-interactive), which keyboard and screen-reader users cannot reach.
    "SWAGGER_UI_SETTINGS": {"deepLinking": False, "validatorUrl": None},
}

# --- Fleetgate
DEVICES_PAGE_SIZES = (25, 50, 100, 200)

# Operations (provision, deprovision, …): see the devices.operations package.
OPERATIONS = {
    # Operations sent to one gateway and not yet answered; the rest wait their turn, so
    # one big batch cannot swamp a gateway's local link.
    "GATEWAY_CONCURRENCY": int(os.environ.get("FLEETGATE_GATEWAY_CONCURRENCY", "1000")),
    "ANSWER_TIMEOUT_S": float(os.environ.get("FLEETGATE_ANSWER_TIMEOUT_S", "60")),
    "MAX_ATTEMPTS": int(os.environ.get("FLEETGATE_MAX_ATTEMPTS", "5")),
    # First retry after 2 s, doubling, at most 5 min apart ("first,most" in seconds).
    "BACKOFF_S": tuple(
        float(s) for s in os.environ.get("FLEETGATE_BACKOFF_S", "2,300").split(",", 1)
    ),
    # How long a device waits for its offline gateway before the operation fails.
    "EXPIRES_AFTER_S": float(os.environ.get("FLEETGATE_OPERATION_EXPIRES_S", str(24 * 3600))),
    "RECONCILE_EVERY_S": 2.0,
}


# Firmware images (firmware/): the upload cap, and the download links gateways get.
FIRMWARE = {
    "MAX_IMAGE_BYTES": int(float(os.environ.get("FLEETGATE_FIRMWARE_MAX_MIB", "64")) * 2**20),
    # How long a load_image operation's download token stays valid after it is issued.
    "DOWNLOAD_TOKEN_TTL_S": float(os.environ.get("FLEETGATE_FIRMWARE_TOKEN_TTL_S", str(48 * 3600))),
    # The portal's address as gateways reach it; download URLs in load_image commands
    # start with it.
    "PUBLIC_URL": os.environ.get("FLEETGATE_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
}


# Encryption at rest for secrets; newest key first. Defaults to a key derived from
# SECRET_KEY, so the demo needs nothing; production sets its own list.
def derived_key(secret: str) -> str:
    digest = hashlib.sha256(("fleetgate-field-encryption:" + secret).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS", "") or [derived_key(SECRET_KEY)]

# Live widgets: the pub/sub layer fans out ~13x faster than the core layer and never
# silently drops at a capacity limit; at-most-once is fine because pages resync.
# Redis pub/sub channels are global to the server, not per database: the prefix carries
# the database number, so two portals sharing a Redis (a demo and a test run) never see
# each other's live pushes, which name organizations and devices by id.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [REDIS_URL],
            "prefix": f"fleetgate{urlparse(REDIS_URL).path.strip('/') or '0'}",
        },
    }
}

# --- Licensing: the vendor's Ed25519 public key (base64 of the raw 32 bytes) that signs
# license files. The default is the DEMO key of licensing/keys.py, whose private half is
# in the repository too: a deployment sets its own ("manage.py check" warns otherwise).
DEMO_LICENSE_PUBLIC_KEY = "pz1TFHJCgqhGbaKK0HVedw8Y6qYuRcr4cJMdLmGJbac="
LICENSE_PUBLIC_KEY = os.environ.get("LICENSE_PUBLIC_KEY", "").strip() or DEMO_LICENSE_PUBLIC_KEY
