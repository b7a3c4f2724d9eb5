"""Celery worker and beat write JSON lines only, and a task's log lines carry the request id of the
web request that sent it.

Celery would otherwise take over logging (hijack the root logger, redirect stdout to a logger one
fragment per record) and print a banner and its shutdown messages as plain text. Here Django's
LOGGING (the JSON lines of ops/logs.py) stays in force, the banners become one JSON line each, and
the messages Celery writes from its signal handlers are JSON lines written without logging's locks.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, signals
from kombu.utils.objects import cached_property

logger = structlog.get_logger(__name__)
# Bound in the web request's log context (ops/middleware.py) and carried as task message headers.
CARRIED_FIELDS = ("request_id", "trace_id")


class JsonLoggingCelery(Celery):
    """A Celery app whose worker and beat programs write JSON lines only."""

    # By name: celery.apps.worker costs a second of imports, which only the worker and beat pay.
    @cached_property
    def Worker(self) -> type[Any]:
        return self.subclass_with_self("ops.celery_programs:JsonWorker")  # type: ignore[no-any-return]

    @cached_property
    def Beat(self) -> type[Any]:
        return self.subclass_with_self("ops.celery_programs:JsonBeat")  # type: ignore[no-any-return]


@signals.setup_logging.connect
def _keep_django_logging(**_: Any) -> None:
    """Any receiver stops Celery from configuring logging itself: Django's LOGGING stays (set up by
    Celery's Django fixup or _django_logging), and stdout is not redirected to a logger."""


@signals.before_task_publish.connect
def _carry_request_context(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    bound = structlog.contextvars.get_contextvars()
    for field in CARRIED_FIELDS:
        if bound.get(field) and field not in headers:
            headers[field] = bound[field]


@signals.task_prerun.connect
def _bind_task_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    fields: dict[str, Any] = {"task_id": task_id, "task": getattr(task, "name", None)}
    request = getattr(task, "request", None)
    for field in CARRIED_FIELDS:
        value = getattr(request, field, None)
        if isinstance(value, str) and value:
            fields[field] = value
    structlog.contextvars.bind_contextvars(**fields)


@signals.task_postrun.connect
def _unbind_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
