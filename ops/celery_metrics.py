"""Prometheus metrics of a Celery worker: tasks finished per task and outcome, served on METRICS_PORT.

The prefork pool runs tasks in child processes, so the worker collects in prometheus_client's
multiprocess mode (a directory of its own, made before the pool forks) and its main process serves
what every child counted.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from celery.signals import task_postrun, worker_init
from django.conf import settings
from prometheus_client import CollectorRegistry, Counter, multiprocess, start_http_server, values

TASKS = Counter("celery_tasks_total", "Tasks the worker finished, by outcome", ["task", "outcome"])


def _worker_metrics_serve(**_: Any) -> None:
    port = settings.METRICS_PORT
    if not port:
        return
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="celery-metrics-")
    # Values made from now on (every labelled child, in the pool's processes) go to that directory.
    values.ValueClass = values.MultiProcessValue()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)


def _task_count(sender: Any = None, state: str | None = None, **_: Any) -> None:
    TASKS.labels(getattr(sender, "name", "unknown"), (state or "unknown").lower()).inc()


def celery_metrics_connect() -> None:
    """Counts every finished task and serves the counts on METRICS_PORT when the worker starts."""
    worker_init.connect(_worker_metrics_serve, weak=False)
    task_postrun.connect(_task_count, weak=False)
