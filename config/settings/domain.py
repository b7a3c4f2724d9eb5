"""Business settings of the legacy system: how the CRM orchestrates and how fast the MES works;
and how the extracted services call each other."""

import hashlib
import hmac

from config.settings.base import SECRET_KEY
from config.settings.env import env

# "polling": the CRM's periodic task polls the shared database (today's behaviour).
ORCHESTRATION_MODE = env.str("ORCHESTRATION_MODE", default="polling")
CRM_POLL_INTERVAL_SECONDS = env.float("CRM_POLL_INTERVAL_SECONDS", default=5.0)
CRM_POLL_BATCH_SIZE = env.int("CRM_POLL_BATCH_SIZE", default=200)
# Simulated duration of each production stage (queued -> cutting -> ... -> done).
MES_STAGE_SECONDS = env.float("MES_STAGE_SECONDS", default=1.0)
MES_API_RATE_LIMIT = env.str("MES_API_RATE_LIMIT", default="6000/min")
# Keys with a rate of their own, by key name: MES_API_KEY_RATE_LIMITS=shop-service=1000/s. The shop
# service asks one quote per distinct order line (about 1.5 per order): 200 orders/s need ~300
# quotes/s, three times MES_API_RATE_LIMIT. A per-second window keeps DRF's request history short.
MES_API_KEY_RATE_LIMITS = env.dict("MES_API_KEY_RATE_LIMITS", default={})
# Failed MES API-key attempts (a key that matches none) are counted per client address and per
# presented key prefix, in the shared cache, over fixed windows. An address or prefix past its
# bound is answered 429 until its window ends, whatever key it sends: guessing keys costs time.
MES_API_KEY_FAILURES_PER_ADDRESS = env.int("MES_API_KEY_FAILURES_PER_ADDRESS", default=20)
MES_API_KEY_FAILURES_PER_PREFIX = env.int("MES_API_KEY_FAILURES_PER_PREFIX", default=20)
MES_API_KEY_FAILURE_WINDOW_SECONDS = env.int("MES_API_KEY_FAILURE_WINDOW_SECONDS", default=60)
# Peers whose X-Forwarded-For names the client (the strangler proxy, a load balancer): the client
# address is the right-most hop that is not one of them. Anyone else's X-Forwarded-For is ignored.
LEGACY_TRUSTED_PROXIES = env.list("LEGACY_TRUSTED_PROXIES", default=["127.0.0.1/32", "::1/128"])

# Who runs production (issue 9, the MES split). "legacy": the CRM sends confirmed orders to the
# legacy MES over Celery and the MES reports each stage back (today). "service": mes_production runs
# production from shop.order.confirmed events and publishes production.* events, which the consumer
# group of the side that owns the orders applies (legacy-production-status or
# shop-production-status, docs/data-migration.md); the CRM sends nothing to the legacy MES, its
# poller is not scheduled and its MES tasks only log what is still delivered to them.
MES_PRODUCTION = env.str("MES_PRODUCTION", default="legacy")
if MES_PRODUCTION not in ("legacy", "service"):
    raise ValueError(f"MES_PRODUCTION is {MES_PRODUCTION!r}; it must be 'legacy' or 'service'")

CELERY_BEAT_SCHEDULE = (
    {
        "crm-poll-confirmed-orders": {
            "task": "legacy.crm.tasks.poll_confirmed_orders",
            "schedule": CRM_POLL_INTERVAL_SECONDS,
        }
    }
    if ORCHESTRATION_MODE == "polling" and MES_PRODUCTION == "legacy"
    else {}
)
# How each service runs (ops.process_group starts them).
SERVICE_PROCESSES = {
    "legacy": "legacy.processes:legacy_process_commands",
    "shop": "shop_app.processes:shop_process_commands",
    "crm": "crm_app.processes:crm_process_commands",
    "mes_production": "mes_production.processes:mes_production_process_commands",
    "mes_pricing": "mes_pricing.processes:pricing_process_commands",
}

# Apps renamed since a database may have been migrated (old label -> new): db_setup moves their
# migration records, so the existing tables are not created again. The monolith's apps were
# `shop`, `crm` and `mes`, names that collided with the extracted services'.
MIGRATION_APP_LABEL_RENAMES = {"shop": "legacy_shop", "crm": "legacy_crm", "mes": "legacy_mes"}

# The extracted shop prices each order line through the MES quotes API of whoever serves it (the
# monolith today, mes_pricing after the MES split), over HTTP with a bounded wait. MES_API_KEY is
# a key issued by that service (`SERVICE=legacy manage.py credentials api-key --name shop-service`).
MES_API_URL = env.str("MES_API_URL", default="http://127.0.0.1:8000")
MES_API_KEY = env.str("MES_API_KEY", default="")
MES_API_TIMEOUT = env.float("MES_API_TIMEOUT", default=2.0)
# The legacy shop's pricing (issue 9, the MES split): empty, it prices in-process as it always has;
# set (e.g. http://127.0.0.1:8003), it asks the pricing service's POST /mes/api/quotes/ with the
# key PRICING_API_KEY (`SERVICE=mes_pricing manage.py pricing_api_key --name legacy-shop`), waiting
# at most MES_API_TIMEOUT; a pricing service that cannot answer gives a 503 pricing_unavailable.
PRICING_API_URL = env.str("PRICING_API_URL", default="")
PRICING_API_KEY = env.str("PRICING_API_KEY", default="")

# Service-to-service calls ("Authorization: Service <token>" on the shop's /shop/internal/ API).
# Without SERVICE_API_TOKEN every process of one checkout derives the same token from SECRET_KEY,
# so they agree with nothing to configure; production sets it (and DJANGO_SECRET_KEY).
SERVICE_API_TOKEN = env.str(
    "SERVICE_API_TOKEN",
    default=hmac.new(SECRET_KEY.encode(), b"service-api-token", hashlib.sha256).hexdigest(),
)
# Where the CRM finds the shop's internal API, and how long it waits for an answer before it tells
# its staff client the shop is unavailable (503) instead of hanging.
SHOP_INTERNAL_URL = env.str("SHOP_INTERNAL_URL", default="http://127.0.0.1:8001")
SHOP_INTERNAL_TIMEOUT = env.float("SHOP_INTERNAL_TIMEOUT", default=2.0)

# The production service's stage runner (`SERVICE=mes_production manage.py production_stages`):
# it moves an order on MES_STAGE_SECONDS after its last stage began, sleeping until the next order
# is due but never longer than this (an order started meanwhile is due one stage time later).
PRODUCTION_STAGES_POLL_SECONDS = env.float("PRODUCTION_STAGES_POLL_SECONDS", default=0.2)
PRODUCTION_STAGES_BATCH_SIZE = env.int("PRODUCTION_STAGES_BATCH_SIZE", default=200)
# The deprecated external read of production orders (/mes/api/production-orders/, served by
# mes_pricing from its projection): announced as deprecated since DEPRECATED_AT, answered until
# SUNSET (after it the proxy answers 410 Gone: legacy/migration_plan.yaml reads the same variable),
# its notice at DEPRECATION_LINK. Dates: ISO 8601 with an offset, or an HTTP-date.
MES_PRODUCTION_ORDERS_DEPRECATED_AT = env.str(
    "MES_PRODUCTION_ORDERS_DEPRECATED_AT", default="2026-12-01T00:00:00Z"
)
MES_PRODUCTION_ORDERS_SUNSET = env.str("MES_PRODUCTION_ORDERS_SUNSET", default="2027-06-01T00:00:00Z")
MES_PRODUCTION_ORDERS_DEPRECATION_LINK = env.str(
    "MES_PRODUCTION_ORDERS_DEPRECATION_LINK",
    default="https://docs.example.com/mes/production-orders-deprecation",
)

# What Prometheus scrapes (`manage.py observability prometheus-config`): one job per process kind,
# each process at its default address. Web processes serve /metrics on their HTTP port (the proxy
# /_strangler/metrics); every worker on the METRICS_PORT given here (start it with that METRICS_PORT).
# PROMETHEUS_SCRAPE_TARGETS (JSON, same shape) replaces the whole map.
METRICS_HOST = env.str("METRICS_HOST", default="127.0.0.1")
_WORKER_METRICS_PORTS = {
    "legacy-celery": 9101,  # celery -A config worker -Q legacy,crm,mes
    "cdc-legacy": 9102,  # SERVICE=cdc manage.py cdc run
    "cdc-catalogue": 9103,  # SERVICE=cdc manage.py cdc run --capture catalogue
    "consumer-legacy-orchestration": 9111,  # manage.py consume legacy-orchestration
    "consumer-legacy-production-status": 9112,
    "consumer-shop-production-status": 9113,  # SERVICE=shop
    "consumer-crm": 9114,  # SERVICE=crm
    "consumer-pricing-catalogue": 9115,  # SERVICE=mes_pricing
    "consumer-pricing-production-orders": 9116,  # SERVICE=mes_pricing
    "consumer-production": 9117,  # SERVICE=mes_production
    "outbox-shop": 9121,  # SERVICE=shop manage.py cdc run --outbox --database shop --table shop_outbox
    "outbox-crm": 9122,
    "outbox-production": 9123,
    "production-stages": 9131,  # SERVICE=mes_production manage.py production_stages
    "migration-sync": 9141,  # manage.py migrate_data sync (its --metrics-port)
}
PROMETHEUS_SCRAPE_TARGETS = env.json(
    "PROMETHEUS_SCRAPE_TARGETS",
    default={
        "proxy": {"targets": [f"{METRICS_HOST}:8080"], "metrics_path": "/_strangler/metrics"},
        "legacy-web": {"targets": [f"{METRICS_HOST}:8000"]},
        "shop-web": {"targets": [f"{METRICS_HOST}:8001"]},
        "crm-web": {"targets": [f"{METRICS_HOST}:8002"]},
        "pricing-web": {"targets": [f"{METRICS_HOST}:8003"]},
        "production-web": {"targets": [f"{METRICS_HOST}:8004"]},
        **{job: {"targets": [f"{METRICS_HOST}:{port}"]} for job, port in _WORKER_METRICS_PORTS.items()},
    },
)
