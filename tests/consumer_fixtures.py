"""Fixtures of the consumer tests (registered from tests/conftest.py): a RabbitMQ vhost per test,
consumer processes started through `manage.py consume`, the probe's effect table."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import kombu
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdc.consuming.rabbitmq import Topology
from harness.consumer_topology import group_topology_declare
from harness.rabbitmq_vhost import rabbitmq_vhost, vhost_name
from harness.waiting import wait_http_ok, wait_until
from ops.process_group import (
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    free_port,
    manage_command,
)

LOG_DIR = PROJECT_ROOT / ".local" / "test-logs"
PARTITIONS = 4


@pytest.fixture
def consumer_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of its own for one test: queues, dead letters and counts start empty."""
    with rabbitmq_vhost(vhost_name("test-consumers")) as url:
        yield url


@pytest.fixture
def consumer_env(live_env: dict[str, str], consumer_vhost: str) -> dict[str, str]:
    return {
        **live_env,
        "SERVICE": "legacy",
        "AMQP_URL": consumer_vhost,
        "CDC_AMQP_URL": consumer_vhost,
        "ORCHESTRATION_MODE": "events",
        "CONSUMER_MODULES": "legacy.crm.consumers,tests.consumer_probe",
        "CONSUMER_PARTITIONS": str(PARTITIONS),
        "CONSUMER_MAX_ATTEMPTS": "3",
        "CONSUMER_RETRY_BASE_SECONDS": "0.05",
        "CONSUMER_RETRY_MAX_SECONDS": "0.5",
        "CONSUMER_REBALANCE_SECONDS": "1",
        "LOG_LEVEL": "INFO",
    }


@dataclass
class RunningConsumer:
    process: ManagedProcess
    metrics_url: str

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of the process whose event name is `event`."""
        assert self.process.log_path is not None
        lines = []
        # The last piece is "" or a line still being written (read while the process logs).
        for line in self.process.log_path.read_text(errors="replace").split("\n")[:-1]:
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == event:
                    lines.append(record)
        return lines


StartConsumer = Callable[..., RunningConsumer]


@pytest.fixture
def start_consumer(consumer_env: dict[str, str]) -> Iterator[StartConsumer]:
    """Starts `manage.py consume <group>` processes, stopped at the end of the test."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with ProcessGroup() as group:

        def start(
            group_name: str, *, tag: str = "", env: dict[str, str] | None = None, transport: str = "rabbitmq"
        ) -> RunningConsumer:
            port = free_port()
            log_path = LOG_DIR / f"consumer-{group_name}-{tag or 'main'}-{port}.log"
            command = manage_command(
                "consume", group_name, "--transport", transport, "--metrics-port", str(port)
            )
            process = group.start(
                ManagedProcess(
                    f"consume-{group_name}-{tag}", command, {**consumer_env, **(env or {})}, log_path
                )
            )
            assert process.popen is not None
            wait_http_ok(f"http://127.0.0.1:{port}/metrics", seconds=60, process=process.popen)
            return RunningConsumer(process=process, metrics_url=f"http://127.0.0.1:{port}/metrics")

        yield start


@pytest.fixture
def probe_table(transactional_db: None) -> None:
    from tests.consumer_probe import probe_table_reset

    probe_table_reset()


@dataclass
class EngineOrderEvents:
    """Order events as the real CDC engine publishes them, and where consumers read them.

    The engine is the session's `cdc_engine` (tests/cdc_fixtures.py): `manage.py cdc run` on the
    test legacy database, publishing to the session's vhost (`url`). A consumer reads them there
    (`consumer_env`) while its Celery tasks stay on the test's own vhost. The group queues a test
    declares here are deleted after it, so later tests' orders do not pile up in them.
    """

    url: str
    collector: Any  # tests.cdc_fixtures.EventCollector: every event the engine published
    declared: list[Topology] = field(default_factory=list)

    @property
    def consumer_env(self) -> dict[str, str]:
        return {"CDC_AMQP_URL": self.url}

    def topology_declare(self, group_name: str) -> Topology:
        """The group's queues, empty: they receive what the engine publishes from now on."""
        topology = group_topology_declare(self.url, group_name, partitions=PARTITIONS)
        with kombu.Connection(self.url) as connection:
            channel = connection.channel()
            for queue in [*topology.partition_queues, topology.dead_letter]:
                channel.queue_purge(queue)
        self.declared.append(topology)
        return topology

    def wait_published(self, orders: list[Any], *, event_type: str, seconds: float = 60) -> None:
        """Returns once the engine has published `event_type` for every order: the broker has
        routed it to every queue bound then (the collector's queue is one of them)."""
        wanted = {f"order:{order.id}" for order in orders}

        def published() -> bool:
            return wanted <= {e["subject"] for e in self.collector.events(lambda e: e["type"] == event_type)}

        wait_until(published, seconds=seconds, what=f"{event_type} of {len(wanted)} orders published by CDC")

    def topology_delete(self) -> None:
        with kombu.Connection(self.url) as connection:
            channel = connection.channel()
            for topology in self.declared:
                for queue in [*topology.partition_queues, topology.dead_letter]:
                    channel.queue_delete(queue)
                channel.exchange_delete(topology.partition_exchange)
                channel.exchange_delete(topology.dead_letter)


@pytest.fixture
def engine_order_events(cdc_engine: Any, event_collector: Any, amqp_url: str) -> Iterator[EngineOrderEvents]:
    """The real CDC engine as the source of order events (see EngineOrderEvents)."""
    if not cdc_engine.cdc.alive():  # a failed test may have left it stopped
        cdc_engine.cdc.start()
    events = EngineOrderEvents(url=amqp_url, collector=event_collector)
    yield events
    events.topology_delete()
