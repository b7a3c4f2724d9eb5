"""Core Django settings and the SERVICE switch that picks a process's apps, URLconf and database."""

import warnings
from pathlib import Path

from config.processes import DEFAULT_SERVICE, SERVICES, installed_apps
from config.settings.env import env

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Which process this is: it picks the installed apps, the URLconf and which database is "default"
# (config/processes.py). The proxy and CDC processes load no legacy app.
SERVICE = env.str("SERVICE", default=DEFAULT_SERVICE)
if SERVICE not in SERVICES:
    raise ValueError(f"SERVICE={SERVICE!r} is not one of {', '.join(SERVICES)}")

# A development key is generated per checkout; production sets DJANGO_SECRET_KEY.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-key-set-DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])

INSTALLED_APPS = installed_apps(SERVICE)

MIDDLEWARE = [
    "ops.middleware.RequestContextMiddleware",
    "ops.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files of the process's own pages (the admin's styles), served by the process itself.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = f"config.urls.{SERVICE}"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
# The proxy's own pages live under /_strangler/, so its static files do too: every other path is
# the migrated system's (the legacy monolith's /static/ included).
STATIC_URL = "/_strangler/static/" if SERVICE == "proxy" else "/static/"
# The proxy's admin shares the host with the migrated system's (the monolith's /admin/ uses Django's
# `sessionid` and `csrftoken` with Path=/): the proxy's own cookies get their own names, starting with
# "strangler_" like every cookie of the proxy's (it removes them from what it forwards to a backend,
# and looks only at Cookie headers holding that prefix; strangler.proxy.header_policy), and the path
# of its own pages, so neither side overwrites the other's session.
if SERVICE == "proxy":
    SESSION_COOKIE_NAME = "strangler_sessionid"
    SESSION_COOKIE_PATH = "/_strangler/"
    CSRF_COOKIE_NAME = "strangler_csrftoken"
    CSRF_COOKIE_PATH = "/_strangler/"
# WhiteNoise serves them straight from the apps' static folders (indexed once at start), so there
# is no collectstatic step (and no STATIC_ROOT) to forget.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False
# Under ASGI (the proxy) Django reads WhiteNoise's file iterator in a thread and warns on every
# process start; for the admin's few small files that is what we want.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Bodies above this are refused with 413 before any view reads them.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["ops.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "EXCEPTION_HANDLER": "ops.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "ops.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "ops.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Legacy monolith API",
    "VERSION": "1.0.0",
    # Request bodies get their own components, which carry what only a request must obey (a
    # required text is not blank: minLength 1), so a client generated from the schema is refused
    # nothing the schema allows.
    "COMPONENT_SPLIT_REQUEST": True,
    # Order and production statuses both have a field named "status".
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "legacy.shop.models.OrderStatus",
        "ProductionStatusEnum": "legacy.mes.models.ProductionStatus",
    },
}
