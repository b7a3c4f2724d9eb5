"""Java's own logging reaches the JSON logs: a record of java.util.logging (the PostgreSQL JDBC
driver logs through it) comes out of a running `manage.py cdc run` as a JSON line with its level
and its Java logger's name, like Debezium's log4j2 lines; JUL prints no plain-text line of its own."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from harness.waiting import wait_until
from tests.cdc_fixtures import CdcProcess, cdc_child_env, engine_process, legacy_capture_config

JUL_CONSOLE_LINE = re.compile(r"^(SEVERE|WARNING|INFO|CONFIG|FINE|FINER|FINEST): ")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "control"]),
]


@pytest.fixture
def debug_engine(
    django_db_blocker: Any, live_env: dict[str, str], amqp_url: str, worker_id: str
) -> Iterator[CdcProcess]:
    """An engine on its own slot with the JDBC driver's logging at DEBUG (JUL's FINE), the rest of
    Java's at WARN and Python's at INFO."""
    config = legacy_capture_config(worker_id, "jul")
    env = cdc_child_env(
        live_env,
        config,
        CDC_AMQP_URL=amqp_url,
        CDC_JAVA_LOG_LEVEL="WARN",
        CDC_JAVA_LOGGER_LEVELS="org.postgresql=DEBUG",
    )
    with django_db_blocker.unblock(), engine_process(config, env, tag="cdc-jul") as engine:
        yield engine


def log_lines(engine: CdcProcess) -> list[str]:
    assert engine.process is not None and engine.process.log_path is not None
    return [line for line in engine.process.log_path.read_text(errors="replace").splitlines() if line]


def test_a_java_util_logging_record_becomes_a_json_line_with_level_and_logger(
    debug_engine: CdcProcess,
) -> None:
    def jdbc_driver_lines() -> list[dict[str, Any]]:
        found = []
        for line in log_lines(debug_engine):
            if '"org.postgresql' in line:
                record = json.loads(line)
                if str(record.get("logger", "")).startswith("org.postgresql"):
                    found.append(record)
        return found

    records = wait_until(jdbc_driver_lines, seconds=60, interval=0.5, what="a JDBC driver (JUL) log line")
    record = records[0]
    assert record["level"] == "debug"
    assert record["event"] == "java.log" and record["message"]
    assert "timestamp" in record and "thread" in record
    # JUL's own console format: a date line, then "LEVEL: message".
    plain = [line for line in log_lines(debug_engine) if JUL_CONSOLE_LINE.match(line)]
    assert not plain, f"JUL printed plain text: {plain[:5]}"
