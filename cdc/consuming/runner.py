"""Runs one consumer group in this process until SIGTERM/SIGINT: the service behind `manage.py consume`."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import kombu
import structlog
from django.conf import settings
from prometheus_client import start_http_server

from cdc.consuming.groups import ConsumerGroup, consumer_groups
from cdc.consuming.kafka import KafkaConsumer
from cdc.consuming.processing import EventProcessor, RetryPolicy
from cdc.consuming.rabbitmq import RabbitMQConsumer, Topology, topology_declare

logger = structlog.get_logger(__name__)
TRANSPORTS = ("rabbitmq", "kafka")


class ConsumerSetupError(Exception):
    """The group cannot run in this process; the message says what to change."""


def consumer_group_get(name: str) -> ConsumerGroup:
    groups = consumer_groups()
    if name not in groups:
        known = ", ".join(sorted(groups)) or "none"
        raise ConsumerSetupError(
            f"No consumer group is named {name!r} (known: {known}). Groups come from the modules in "
            "CONSUMER_MODULES."
        )
    group = groups[name]
    if group.service != settings.SERVICE:
        raise ConsumerSetupError(
            f"Consumer group {name} writes to the {group.service} service's database; run it with "
            f"SERVICE={group.service} (this process is SERVICE={settings.SERVICE})."
        )
    return group


def consumer_run(
    *, name: str, transport: str, metrics_port: int, stop: threading.Event | None = None
) -> None:
    """Consumes for group `name` until `stop` is set or the process gets SIGTERM/SIGINT.

    A signal lets the message in hand finish and be acknowledged; what was prefetched goes back to
    the broker.
    """
    if transport not in TRANSPORTS:
        raise ConsumerSetupError(f"Transport {transport!r} is not one of {', '.join(TRANSPORTS)}.")
    group = consumer_group_get(name)
    stop = stop or threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logger.info("consumer.stop_requested", group=name, signal=signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    started_metrics = False

    def on_ready() -> None:
        nonlocal started_metrics
        if metrics_port and not started_metrics:
            start_http_server(metrics_port)
            started_metrics = True
        logger.info("consumer.ready", group=name, transport=transport, metrics_port=metrics_port or None)

    processor = EventProcessor(
        group,
        RetryPolicy(
            max_attempts=settings.CONSUMER_MAX_ATTEMPTS,
            base_seconds=settings.CONSUMER_RETRY_BASE_SECONDS,
            max_seconds=settings.CONSUMER_RETRY_MAX_SECONDS,
        ),
    )
    if transport == "kafka":
        KafkaConsumer(
            group=group,
            processor=processor,
            bootstrap_servers=settings.CDC_KAFKA_BOOTSTRAP_SERVERS,
            topic=settings.CDC_KAFKA_TOPIC,
            partitions=settings.CONSUMER_PARTITIONS,
            session_timeout_ms=settings.CONSUMER_KAFKA_SESSION_TIMEOUT_MS,
            batch_size=settings.CONSUMER_BATCH_SIZE,
        ).run(stop, on_ready)
    else:
        RabbitMQConsumer(
            group=group,
            processor=processor,
            url=settings.CDC_AMQP_URL,
            exchange=settings.CDC_EXCHANGE,
            partitions=settings.CONSUMER_PARTITIONS,
            prefetch=settings.CONSUMER_PREFETCH,
            batch_size=settings.CONSUMER_BATCH_SIZE,
            rebalance_seconds=settings.CONSUMER_REBALANCE_SECONDS,
            heartbeat_seconds=settings.CONSUMER_HEARTBEAT_SECONDS,
        ).run(stop, on_ready)


def consumer_queues_declare(*, name: str) -> Topology:
    """Declares group `name`'s RabbitMQ exchanges and queues and returns: from then on they keep
    every event the group subscribes to until its consumers start (a group that must not run yet,
    but must miss nothing once it does). Kafka needs no such step: a new group reads the topic
    from its earliest retained offset."""
    group = consumer_group_get(name)
    topology = Topology(group=name, exchange=settings.CDC_EXCHANGE, partitions=settings.CONSUMER_PARTITIONS)
    with kombu.Connection(settings.CDC_AMQP_URL, connect_timeout=10) as connection:
        topology_declare(connection.channel(), topology, group.bindings())
    logger.info("consumer.queues_declared", group=name, queues=topology.partition_queues)
    return topology
