"""The Celery worker and beat programs of JsonLoggingCelery (ops/celery_logs.py): banners as one JSON
line each, shutdown messages from signal handlers as JSON lines. Imported only by those programs."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

import celery.apps.worker
import structlog
from celery.apps.beat import Beat
from celery.apps.worker import Worker

from ops.logs import json_line

logger = structlog.get_logger(__name__)


def _say_as_json(msg: str, f: TextIO | None = sys.__stderr__) -> None:
    """Replaces celery.apps.worker.safe_say ("worker: Warm shutdown (MainProcess)", ...), which runs
    in signal handlers: one JSON line, written directly."""
    json_line(msg.strip(), logger="celery.worker", stream=f or sys.stderr)


celery.apps.worker.safe_say = _say_as_json  # type: ignore[assignment]


def _django_logging() -> None:
    """Configures Django (so its LOGGING) before Celery's first warning: the worker checks its
    privileges, and warns, before Celery's Django fixup sets Django up."""
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        import django

        django.setup()


class JsonWorker(Worker):
    def on_before_init(self, quiet: bool = False, **kwargs: Any) -> None:
        _django_logging()
        super().on_before_init(quiet=quiet, **kwargs)

    def emit_banner(self) -> None:
        logger.info(
            "celery.worker.started",
            hostname=self.hostname,
            queues=sorted(self.app.amqp.queues.consume_from or ()),
            concurrency=self.concurrency,
            pool=getattr(self.pool_cls, "__module__", str(self.pool_cls)),
        )


class JsonBeat(Beat):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "quiet": True})  # the banner is the JSON line below

    def start_scheduler(self) -> None:
        logger.info(
            "celery.beat.started",
            scheduler=str(self.scheduler_cls),
            schedule=str(self.schedule),
            max_interval=self.max_interval,
        )
        super().start_scheduler()
