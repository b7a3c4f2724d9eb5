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
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
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
        batch_size: int,
    ) -> None:
        self.group = group
        self.processor = processor
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.partitions = partitions
        self.session_timeout_ms = session_timeout_ms
        self.batch_size = batch_size
        self._dead_letter_failures: list[KafkaError] = []

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
        pending: list[Message] = []
        try:
            while not stop.is_set():
                if not pending:
                    pending = self._poll(consumer)
                    continue
                verdicts = self.processor.process_batch(
                    [message.value() or b"" for message in pending],
                    wait=lambda seconds: not stop.wait(seconds),
                    stopping=stop.is_set,
                )
                settled, pending = pending[: len(verdicts)], pending[len(verdicts) :]
                self._settle(consumer, producer, settled, verdicts)
        finally:
            # Leaving the group at once moves the partitions without waiting for the session timeout.
            consumer.close()
            logger.info("consumer.stopped", group=self.group.name)

    def _poll(self, consumer: Consumer) -> list[Message]:
        messages = []
        for message in consumer.consume(num_messages=self.batch_size, timeout=0.5):
            error = message.error()
            if error is None:
                messages.append(message)
            elif error.fatal():
                raise KafkaException(error)
            else:
                logger.warning("consumer.kafka_error", error=str(error))
        return messages

    def _settle(
        self, consumer: Consumer, producer: Producer, messages: list[Message], verdicts: list[Verdict]
    ) -> None:
        """Dead-letters what must be, then commits the offsets after the settled messages."""
        offsets: dict[tuple[str, int], int] = {}
        for message, verdict in zip(messages, verdicts, strict=True):
            if verdict.action == Verdict.RELEASE:
                break  # stopping: not committed, the partition's next owner gets it again
            if verdict.action == Verdict.DEAD_LETTER:
                self._dead_letter(producer, message, verdict)
            offsets[(str(message.topic()), int(message.partition() or 0))] = int(message.offset() or 0) + 1
        if any(v.action == Verdict.DEAD_LETTER for v in verdicts):
            self._dead_letters_flush(producer)
        if offsets:
            consumer.commit(
                offsets=[
                    TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()
                ],
                asynchronous=False,
            )

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
        producer.produce(
            dead_letter_topic(self.group.name),
            value=message.value(),
            key=message.key(),
            headers=headers,
            on_delivery=lambda error, _: self._dead_letter_failures.append(error) if error else None,
        )

    def _dead_letters_flush(self, producer: Producer) -> None:
        """Waits until the broker has every dead letter; the originals' offsets are committed after."""
        remaining = producer.flush(30)
        failures, self._dead_letter_failures = self._dead_letter_failures, []
        if remaining or failures:
            raise KafkaException(failures[0] if failures else "dead-letter produce timed out")
