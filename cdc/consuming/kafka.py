"""Kafka transport of the consumers (confluent-kafka): the same processing behind the same run().

The topic is keyed by aggregate id, so an aggregate's events share a partition and a partition is
read by one group member at a time, in order. The offset is committed synchronously after the
inbox transaction: a crash in between redelivers the message, which the inbox recognises. A
message that cannot be handled is produced to `<group>.dead-letter` with the reason in headers
before its offset is committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cdc.consuming.groups import ConsumerGroup
from cdc.consuming.processing import EventProcessor, Verdict

logger = structlog.get_logger(__name__)


def dead_letter_topic(group: str) -> str:
    return f"{group}.dead-letter"


def topics_ensure(bootstrap_servers: str, topics: list[str], *, partitions: int) -> None:
    """Creates the topics that do not exist yet (the engine may have created the events topic)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [
        NewTopic(topic, num_partitions=partitions, replication_factor=1)
        for topic in topics
        if topic not in existing
    ]
    for topic, future in admin.create_topics(missing).items() if missing else ():
        try:
            future.result(timeout=15)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        logger.info("consumer.topic_created", topic=topic)


class KafkaConsumer:
    def __init__(
        self,
        *,
        group: ConsumerGroup,
        processor: EventProcessor,
        bootstrap_servers: str,
        topic: str,
        partitions: int,
        session_timeout_ms: int,
    ) -> None:
        self.group = group
        self.processor = processor
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.partitions = partitions
        self.session_timeout_ms = session_timeout_ms

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        topics_ensure(
            self.bootstrap_servers,
            [self.topic, dead_letter_topic(self.group.name)],
            partitions=self.partitions,
        )
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": self.group.name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self.session_timeout_ms,
                "heartbeat.interval.ms": max(1000, self.session_timeout_ms // 3),
            }
        )
        producer = Producer(
            {"bootstrap.servers": self.bootstrap_servers, "enable.idempotence": True, "acks": "all"}
        )
        consumer.subscribe(
            [self.topic],
            on_assign=lambda _, parts: logger.info(
                "consumer.partitions_assigned", partitions=[p.partition for p in parts]
            ),
            on_revoke=lambda _, parts: logger.info(
                "consumer.partitions_revoked", partitions=[p.partition for p in parts]
            ),
        )
        logger.info("consumer.subscribed", group=self.group.name, topic=self.topic)
        on_ready()
        try:
            while not stop.is_set():
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    logger.warning("consumer.kafka_error", error=str(error))
                    continue
                verdict = self.processor.process(message.value() or b"", wait=lambda s: not stop.wait(s))
                if verdict.action == Verdict.RELEASE:
                    break  # not committed: the partition's next owner gets it again
                if verdict.action == Verdict.DEAD_LETTER:
                    self._dead_letter(producer, message, verdict)
                consumer.commit(message=message, asynchronous=False)
        finally:
            # Leaving the group at once moves the partitions without waiting for the session timeout.
            consumer.close()
            logger.info("consumer.stopped", group=self.group.name)

    def _dead_letter(self, producer: Producer, message: Message, verdict: Verdict) -> None:
        headers: list[tuple[str, Any]] = list(message.headers() or [])  # type: ignore[arg-type]
        headers += [
            (key, str(value).encode()) for key, value in verdict.dead_letter_headers(self.group.name).items()
        ]
        headers += [
            ("x-original-topic", str(message.topic()).encode()),
            ("x-original-partition", str(message.partition()).encode()),
            ("x-original-offset", str(message.offset()).encode()),
        ]
        failures: list[KafkaError] = []
        producer.produce(
            dead_letter_topic(self.group.name),
            value=message.value(),
            key=message.key(),
            headers=headers,
            on_delivery=lambda error, _: failures.append(error) if error else None,
        )
        if producer.flush(30) or failures:
            raise KafkaException(failures[0] if failures else "dead-letter produce timed out")
