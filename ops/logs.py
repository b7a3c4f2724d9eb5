"""Every line a process writes is one JSON object (docs/observability-logs.md): the structlog
processors every line goes through, the formatter a logging dictConfig names (Django's LOGGING,
granian's --log-config), and the hooks that turn warnings and uncaught exceptions into such lines.

Importable without Django settings: granian's main process configures its logging from
config/granian_logging.json before any Django code runs.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from ops.tracing import add_trace_ids

SHARED_PROCESSORS: list[Processor] = [
    structlog.contextvars.merge_contextvars,  # request_id (and task ids) bound for the request or task
    add_trace_ids,  # the current span's trace_id and span_id
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
UNCAUGHT_LOGGER = "ops.uncaught"


def json_formatter() -> logging.Formatter:
    """A stdlib formatter writing each record, a library's or structlog's, as one JSON line (a
    traceback goes into the line's `exception` field)."""
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        foreign_pre_chain=SHARED_PROCESSORS,
    )


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    structlog.get_logger(UNCAUGHT_LOGGER).critical("process.uncaught_exception", exc_info=(exc_type, exc, tb))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # what threading's own hook does too
    structlog.get_logger(UNCAUGHT_LOGGER).critical(
        "thread.uncaught_exception",
        thread=args.thread.name if args.thread is not None else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def uncaught_as_json() -> None:
    """Python warnings and uncaught exceptions (main thread and other threads) become one JSON
    line each, through logging, instead of lines of plain text on stderr. Once per process."""
    logging.captureWarnings(True)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


def json_line(
    event: str, *, level: str = "info", logger: str = "", stream: TextIO | None = None, **fields: Any
) -> None:
    """Writes one JSON line without going through logging: for what runs inside a signal handler,
    where taking a logging handler's lock could interleave with the line being written."""
    line = {"event": event, **fields, "level": level, "logger": logger}
    line["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    target = stream or sys.stderr
    target.write(json.dumps(line, default=str) + "\n")
    target.flush()
