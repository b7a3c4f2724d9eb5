"""Session-scoped real services for integration tests: a RabbitMQ vhost per test session and the
legacy monolith's processes (granian web, Celery worker, Celery beat) on the test databases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from harness.rabbitmq_vhost import rabbitmq_vhost, vhost_name
from harness.waiting import wait_http_ok
from ops.process_group import (
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    service_process_commands,
)

LOG_DIR = PROJECT_ROOT / ".local" / "test-logs"

# Fixtures of the event consumers' tests and of the change data capture tests (engine processes,
# captures, brokers). One assignment: a second one would silently replace the first.
pytest_plugins = ["tests.consumer_fixtures", "tests.cdc_fixtures"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Drops replication slots a killed earlier run left on this checkout's test databases: an
    idle slot holds WAL, and any slot makes PostgreSQL refuse to drop and recreate the database."""
    import psycopg

    config = settings.DATABASES["default"]
    test_names = [db["TEST"]["NAME"] for db in settings.DATABASES.values()]
    try:
        with psycopg.connect(
            host=config["HOST"], port=config["PORT"], user=config["USER"], dbname="postgres", autocommit=True
        ) as conn:
            stale = conn.execute(
                "SELECT slot_name, database FROM pg_replication_slots WHERE NOT active"
            ).fetchall()
            for slot_name, database in stale:
                if any(database == name or database.startswith(f"{name}_gw") for name in test_names):
                    conn.execute("SELECT pg_drop_replication_slot(%s)", [slot_name])
    except psycopg.OperationalError:
        pass  # no server: the database fixtures will say so with a clearer message


@pytest.fixture(scope="session")
def amqp_url(worker_id: str) -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test session (and xdist worker), deleted at the end."""
    with rabbitmq_vhost(vhost_name(f"test-{worker_id}")) as url:
        yield url


@pytest.fixture(scope="session")
def live_env(django_db_setup: None, amqp_url: str) -> dict[str, str]:
    """Environment for child processes: the test databases, the test vhost, fast timings."""
    # pytest-django creates the test databases only when a collected test is marked django_db;
    # otherwise DATABASES still names the development databases and the children would use them.
    name = settings.DATABASES["default"]["NAME"]
    if not name.startswith("test_"):
        pytest.fail(
            f"the test databases were not set up ({name}): mark the tests that start processes django_db"
        )
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return {
        **database_env(settings.DATABASES),
        "AMQP_URL": amqp_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SERVICE": "legacy",
        # Tests check what production answers (JSON 404/500, no debug pages), whatever the shell has.
        "DJANGO_DEBUG": "false",
        "CRM_POLL_INTERVAL_SECONDS": "0.5",
        "MES_STAGE_SECONDS": "0.05",
        "LOG_LEVEL": "WARNING",
    }


@dataclass
class LegacyStack:
    base_url: str
    processes: dict[str, ManagedProcess]


def start_legacy_stack(
    group: ProcessGroup, env: dict[str, str], tag: str, *, polling: bool = False
) -> LegacyStack:
    """The monolith's web and worker processes, and its polling scheduler when `polling`."""
    port = free_port()
    processes = {}
    for name, command in service_process_commands("legacy", port=port).items():
        if name == "beat" and not polling:
            continue
        log_path = Path(LOG_DIR / f"{tag}-{name}-{port}.log")
        processes[name] = group.start(ManagedProcess(name, command, env, log_path))
    base_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base_url}/healthz", seconds=30, process=processes["web"].popen)
    return LegacyStack(base_url=base_url, processes=processes)


@pytest.fixture(scope="session")
def legacy_stack(live_env: dict[str, str], worker_id: str) -> Iterator[LegacyStack]:
    """The monolith's web and worker, running until the end of the session (polling: legacy_polling)."""
    with ProcessGroup() as group:
        yield start_legacy_stack(group, live_env, f"legacy-{worker_id}")


def start_legacy_polling(env: dict[str, str]) -> ManagedProcess:
    """Starts the CRM's polling scheduler (Celery beat) on the test databases; the caller stops it."""
    tag = free_port()  # names the schedule file; any unique number does
    command = service_process_commands("legacy", port=tag)["beat"]
    return ManagedProcess("beat", command, env, LOG_DIR / f"legacy-beat-{tag}.log").start()


@pytest.fixture
def legacy_polling(legacy_stack: LegacyStack, live_env: dict[str, str]) -> Iterator[ManagedProcess]:
    """The CRM's polling scheduler for one test.

    The session's legacy stack runs without it: every test shares its test database, and a
    poller running all session long would race CDC and events-mode tests for the orders they make.
    """
    beat = start_legacy_polling(live_env)
    yield beat
    beat.stop()
