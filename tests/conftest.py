"""Session-scoped real services for integration tests: a RabbitMQ vhost per test session and the
legacy monolith's processes (granian web, Celery worker, Celery beat) on the test databases."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from ops.process_group import (
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    legacy_process_commands,
    wait_http_ok,
)

LOG_DIR = PROJECT_ROOT / ".local" / "test-logs"
# Fixtures of the consumer tests (consumer processes, vhosts) and of the change data capture tests
# (engine processes, captures, brokers). One list: a second assignment would drop the first.
pytest_plugins = ["tests.consumer_fixtures", "tests.cdc_fixtures"]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def amqp_url(worker_id: str) -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test session (and xdist worker), deleted at the end."""
    vhost = f"test-{os.environ.get('DB_NAME_PREFIX', '')}{worker_id}-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


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


_running_stacks: list[LegacyStack] = []


def start_legacy_stack(group: ProcessGroup, env: dict[str, str], tag: str) -> LegacyStack:
    port = free_port()
    processes = {}
    for name, command in legacy_process_commands(port=port).items():
        log_path = Path(LOG_DIR / f"{tag}-{name}-{port}.log")
        processes[name] = group.start(ManagedProcess(name, command, env, log_path))
    base_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base_url}/healthz", seconds=30, process=processes["web"].popen)
    stack = LegacyStack(base_url=base_url, processes=processes)
    _running_stacks.append(stack)
    return stack


@pytest.fixture(scope="session")
def legacy_stack(live_env: dict[str, str], worker_id: str) -> Iterator[LegacyStack]:
    """The monolith's web, worker and scheduler, running until the end of the session."""
    with ProcessGroup() as group:
        stack = start_legacy_stack(group, live_env, f"legacy-{worker_id}")
        yield stack
    _running_stacks.remove(stack)


@pytest.fixture
def polling_paused() -> Iterator[None]:
    """Stops the CRM's polling scheduler of every running legacy stack for one test.

    The session's legacy stack polls the same test database in `polling` mode; a test of the
    events mode would otherwise race it for every confirmed order it creates.
    """
    paused = [stack.processes["beat"] for stack in _running_stacks if stack.processes["beat"].alive()]
    for beat in paused:
        beat.stop()
    yield
    for beat in paused:
        beat.start()
