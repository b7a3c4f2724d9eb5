"""RabbitMQ transport of the consumers: topology, partitioned competing consumers, dead letters.

Topology of a group G (all durable, declared idempotently by every consumer process):

    domain.events (topic) --[one binding per event name: sales.invoice.paid.*]-->
    G.partitions (x-consistent-hash on header aggregate_id) --> G.p0 .. G.p<N-1>
    G.dead-letter (fanout) --> G.dead-letter (queue)

Each partition queue is `x-single-active-consumer`: every process subscribes to every partition,
the broker delivers a partition to one of them at a time, in order, and hands it to the next one
when that process goes away (its unacknowledged messages are requeued at their place). So all
events of one aggregate go through one process at a time, in publish order. To share the load, a
process that is active on more than its share of the partitions (partitions / processes) closes
its channel on the excess ones between two messages, which passes them on to a waiting process.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import amqp
import kombu
import structlog
from kombu import Exchange, Queue

from cdc.consuming import metrics
from cdc.consuming.groups import ConsumerGroup
from cdc.consuming.processing import EventProcessor, Verdict

logger = structlog.get_logger(__name__)

AGGREGATE_HEADER = "aggregate_id"
# Properties of the original message kept on its dead-letter copy.
KEPT_PROPERTIES = ("content_type", "content_encoding", "message_id", "timestamp", "type", "correlation_id")


@dataclass(frozen=True)
class Topology:
    group: str
    exchange: str
    partitions: int

    @property
    def partition_exchange(self) -> str:
        return f"{self.group}.partitions"

    def partition_queue(self, index: int) -> str:
        return f"{self.group}.p{index}"

    @property
    def partition_queues(self) -> list[str]:
        return [self.partition_queue(i) for i in range(self.partitions)]

    @property
    def dead_letter(self) -> str:
        """Name of the dead-letter exchange and of its queue."""
        return f"{self.group}.dead-letter"


def topology_declare(channel: Any, topology: Topology, bindings: list[str]) -> None:
    """Declares the group's exchanges, partition queues and dead-letter queue (idempotent)."""
    events = Exchange(topology.exchange, type="topic", durable=True)
    partitions = Exchange(
        topology.partition_exchange,
        type="x-consistent-hash",
        durable=True,
        arguments={"hash-header": AGGREGATE_HEADER},
    )
    events(channel).declare()
    partitions(channel).declare()
    for pattern in bindings:
        partitions(channel).bind_to(events, routing_key=pattern)
    for name in topology.partition_queues:
        # Routing key = weight of the queue on the hash ring: equal weights, equal shares.
        Queue(
            name,
            exchange=partitions,
            routing_key="1",
            durable=True,
            queue_arguments={"x-single-active-consumer": True},
        )(channel).declare()
    dead_letter = Exchange(topology.dead_letter, type="fanout", durable=True)
    Queue(
        topology.dead_letter,
        exchange=dead_letter,
        routing_key="",
        durable=True,
        queue_arguments={"x-queue-mode": "lazy"},
    )(channel).declare()


@dataclass
class _Subscription:
    partition: int
    channel: Any
    # Known once a delivery arrived: a single-active-consumer queue sends nothing to a standby.
    active: bool = False


@dataclass
class _Session:
    connection: kombu.Connection
    admin: Any
    dead_letters: Any
    subscriptions: dict[int, _Subscription] = field(default_factory=dict)
    pending: deque[tuple[_Subscription, amqp.Message]] = field(default_factory=deque)


class RabbitMQConsumer:
    def __init__(
        self,
        *,
        group: ConsumerGroup,
        processor: EventProcessor,
        url: str,
        exchange: str,
        partitions: int,
        prefetch: int,
        batch_size: int,
        rebalance_seconds: float,
        heartbeat_seconds: int,
    ) -> None:
        self.group = group
        self.processor = processor
        self.url = url
        self.topology = Topology(group=group.name, exchange=exchange, partitions=partitions)
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.rebalance_seconds = rebalance_seconds
        self.heartbeat_seconds = heartbeat_seconds

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        """Consumes until `stop` is set; reconnects with backoff when the broker goes away."""
        backoff = 1.0
        while not stop.is_set():
            connection = kombu.Connection(self.url, heartbeat=self.heartbeat_seconds, connect_timeout=10)
            errors = (*connection.connection_errors, *connection.channel_errors)
            try:
                with connection:
                    connection.connect()
                    self._consume(connection, stop, on_ready)
                    return
            except errors as exc:
                logger.warning(
                    "consumer.broker_unavailable", group=self.group.name, error=str(exc), retry_in=backoff
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _consume(
        self, connection: kombu.Connection, stop: threading.Event, on_ready: Callable[[], None]
    ) -> None:
        admin = connection.channel()
        topology_declare(admin, self.topology, self.group.bindings())
        session = _Session(connection=connection, admin=admin, dead_letters=connection.channel())
        for partition in range(self.topology.partitions):
            session.subscriptions[partition] = self._subscribe(session, partition)
        logger.info(
            "consumer.subscribed",
            group=self.group.name,
            partitions=self.topology.partitions,
            bindings=self.group.bindings(),
            prefetch=self.prefetch,
        )
        on_ready()
        next_rebalance = time.monotonic() + self.rebalance_seconds
        while not stop.is_set():
            self._fill(session)
            if session.pending:
                self._settle(session, stop)
            connection.heartbeat_check()
            if time.monotonic() >= next_rebalance:
                self._rebalance(session)
                next_rebalance = time.monotonic() + self.rebalance_seconds
        # Closing the channels requeues what was delivered but not handled, at its place.
        for subscription in session.subscriptions.values():
            subscription.channel.close()
        logger.info("consumer.stopped", group=self.group.name)

    def _subscribe(self, session: _Session, partition: int) -> _Subscription:
        channel = session.connection.channel()
        channel.basic_qos(0, self.prefetch, False)
        subscription = _Subscription(partition=partition, channel=channel)

        def deliver(message: amqp.Message) -> None:
            subscription.active = True
            session.pending.append((subscription, message))

        channel.basic_consume(self.topology.partition_queue(partition), callback=deliver)
        return subscription

    def _fill(self, session: _Session) -> None:
        """Reads deliveries until a batch is in hand or the socket has no more; waits only when idle."""
        timeout = 0.0 if session.pending else 0.5
        while len(session.pending) < self.batch_size:
            try:
                session.connection.drain_events(timeout=timeout)
            except TimeoutError:  # socket.timeout is TimeoutError
                return
            timeout = 0.0

    @staticmethod
    def _drain(connection: kombu.Connection, *, timeout: float) -> None:
        try:
            connection.drain_events(timeout=timeout)
        except TimeoutError:  # socket.timeout is TimeoutError
            pass

    def _settle(self, session: _Session, stop: threading.Event) -> None:
        """Hands the oldest messages in hand to the processor as one batch and settles its verdicts."""
        batch = list(itertools.islice(session.pending, self.batch_size))

        def wait(seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                # New deliveries only join the end of `pending`; the batch stays at its head.
                self._drain(session.connection, timeout=min(remaining, 0.5))
                session.connection.heartbeat_check()
            return False

        verdicts = self.processor.process_batch(
            [message.body for _, message in batch], wait=wait, stopping=stop.is_set
        )
        for (subscription, message), verdict in zip(batch, verdicts, strict=False):
            session.pending.popleft()
            if verdict.action == Verdict.RELEASE:
                continue  # stopping: the channel's close at the end requeues it
            if verdict.action == Verdict.DEAD_LETTER:
                self._dead_letter(session, message, verdict)
            subscription.channel.basic_ack(message.delivery_info["delivery_tag"])

    def _dead_letter(self, session: _Session, message: amqp.Message, verdict: Verdict) -> None:
        properties = {key: message.properties[key] for key in KEPT_PROPERTIES if key in message.properties}
        headers = dict(message.properties.get("application_headers") or {})
        headers.update(verdict.dead_letter_headers(self.group.name))
        headers["x-original-exchange"] = message.delivery_info.get("exchange", "")
        headers["x-original-routing-key"] = message.delivery_info.get("routing_key", "")
        copy = amqp.Message(message.body, delivery_mode=2, application_headers=headers, **properties)
        # Confirmed before the original is acknowledged: a crash in between duplicates, never loses.
        session.dead_letters.basic_publish_confirm(
            copy, exchange=self.topology.dead_letter, routing_key="", confirm_timeout=30
        )

    def _rebalance(self, session: _Session) -> None:
        members = 0
        for name in [*self.topology.partition_queues, self.topology.dead_letter]:
            declared = session.admin.queue_declare(queue=name, passive=True)
            # Messages waiting in the broker: the group's lag (and, on its dead-letter queue, what
            # was dead-lettered and not yet dealt with).
            metrics.QUEUE_MESSAGES_READY.labels(self.group.name, name).set(declared.message_count)
            if name != self.topology.dead_letter:
                members = max(members, declared.consumer_count)
        share = math.ceil(self.topology.partitions / max(members, 1))
        active = sorted(p for p, s in session.subscriptions.items() if s.active)
        for partition in active[share:]:
            self._release(session, partition)
        metrics.PARTITIONS_ACTIVE.labels(self.group.name).set(min(len(active), share))
        if len(active) > share:
            logger.info(
                "consumer.partitions_released",
                group=self.group.name,
                released=active[share:],
                kept=active[:share],
                processes=members,
            )

    def _release(self, session: _Session, partition: int) -> None:
        """Hands a partition to the next waiting process: its prefetched messages go back in order."""
        old = session.subscriptions[partition]
        session.pending = deque(item for item in session.pending if item[0] is not old)
        old.channel.close()
        session.subscriptions[partition] = self._subscribe(session, partition)
