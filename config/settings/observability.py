"""Structured JSON logs (structlog) with request, trace and span ids; Prometheus metrics.
Traces are configured by the standard OTEL_* variables (ops/tracing.py)."""

import logging

import structlog
from structlog.typing import Processor

from config.settings.env import env
from ops.logs import SHARED_PROCESSORS

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="json")  # "json" or "console"
METRICS_PORT = env.int("METRICS_PORT", default=0)  # for non-HTTP processes (workers); 0 = off

_shared_processors: list[Processor] = SHARED_PROCESSORS  # request, trace and span ids, level, time

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": structlog.stdlib.ProcessorFormatter,
            "processors": [
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer()
                if LOG_FORMAT == "json"
                else structlog.dev.ConsoleRenderer(),
            ],
            "foreign_pre_chain": _shared_processors,
        },
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "granian.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        # granian's own logger writes plain text to stdout from its own handler: JSON on stderr instead
        # (its main process takes config/granian_logging.json, --log-config).
        "_granian": {"handlers": ["stderr"], "propagate": False},
        # billiard (Celery's pool) logs to "multiprocessing" with propagation off and no handler, which
        # Python then prints as bare text.
        "multiprocessing": {"handlers": ["stderr"], "propagate": False},
    },
}

structlog.configure(
    processors=[
        *_shared_processors,
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(LOG_LEVEL)),
    cache_logger_on_first_use=True,
)

# Alert rules and dashboards (`manage.py observability alerts | dashboards`,
# docs/observability-alerts-dashboards.md). Per-slice bounds come from the migration plan; these are
# the bounds the toolkit has nowhere else.
OBSERVABILITY_ALERT_BOUNDS = "migrations.alert_bounds.alert_bounds"  # reads the plan and the bounds below
ALERT_SLICE_MAX_P99_SECONDS = env.float("ALERT_SLICE_MAX_P99_SECONDS", default=1.0)  # live: no legacy p99
ALERT_CDC_MAX_LAG_BYTES = env.int("ALERT_CDC_MAX_LAG_BYTES", default=256 * 1024 * 1024)
ALERT_CDC_MAX_COMMIT_TO_PUBLISH_SECONDS = env.float("ALERT_CDC_MAX_COMMIT_TO_PUBLISH_SECONDS", default=5.0)
ALERT_CONSUMER_MAX_READY = env.int("ALERT_CONSUMER_MAX_READY", default=1000)
ALERT_CONSUMER_LAG_MINUTES = env.int("ALERT_CONSUMER_LAG_MINUTES", default=5)
ALERT_OUTBOX_MAX_ROWS = env.int("ALERT_OUTBOX_MAX_ROWS", default=1000)
ALERT_RUNBOOK_BASE_URL = env.str("ALERT_RUNBOOK_BASE_URL", default="docs/observability-alerts-dashboards.md")
