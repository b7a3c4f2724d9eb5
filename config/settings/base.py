"""Core Django settings and the SERVICE switch that picks a process's URLconf and database."""

from pathlib import Path

from config.settings.env import env

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Which process this is: it picks the URLconf and which database is "default".
SERVICES = ("legacy", "shop", "crm", "mes_pricing", "mes_production", "proxy", "cdc")
SERVICE = env.str("SERVICE", default="legacy")
if SERVICE not in SERVICES:
    raise ValueError(f"SERVICE={SERVICE!r} is not one of {', '.join(SERVICES)}")

# A development key is generated per checkout; production sets DJANGO_SECRET_KEY.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="dev-only-insecure-key-set-DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])

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
    "ops",
    "legacy.shop",
    "legacy.crm",
    "legacy.mes",
    "strangler",
    "cdc",
]

MIDDLEWARE = [
    "ops.middleware.RequestContextMiddleware",
    "ops.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
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
STATIC_URL = "static/"
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
