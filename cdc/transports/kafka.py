"""Kafka publisher (confluent-kafka): idempotent producer, acks=all, key = subject (aggregate id),
so one aggregate's events keep their order in one partition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from cdc.contract import AGGREGATE_ID_HEADER, MESSAGE_CONTENT_TYPE
from cdc.transports import Event, PublishError, encode_events, publish_spans

logger = structlog.get_logger(__name__)


class KafkaPublisher:
    def __init__(self, *, bootstrap_servers: str, topic: str, delivery_timeout: float = 15.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.delivery_timeout = delivery_timeout
        self._producer: Producer | None = None

    def _open(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap_servers,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 2,
                    "compression.type": "none",
                    # A batch not delivered by then fails, and the engine retries it after a restart.
                    "delivery.timeout.ms": int(self.delivery_timeout * 1000),
                    "socket.connection.setup.timeout.ms": 5000,
                }
            )
        return self._producer

    def publish_batch(self, events: Sequence[Event]) -> None:
        with publish_spans(events, system="kafka", destination=self.topic):
            self._publish_batch(events)

    def _publish_batch(self, events: Sequence[Event]) -> None:
        bodies = encode_events(events)
        if not bodies:
            return
        producer = self._open()
        failures: list[Any] = []

        def delivered(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                failures.append(error)

        try:
            for event, body in zip(events, bodies, strict=True):
                while True:
                    try:
                        producer.produce(
                            self.topic,
                            value=body,
                            key=event["subject"].encode(),
                            headers=[
                                ("content-type", MESSAGE_CONTENT_TYPE.encode()),
                                ("ce_id", event["id"].encode()),
                                ("ce_type", event["type"].encode()),
                                (AGGREGATE_ID_HEADER, event["subject"].encode()),
                            ],
                            on_delivery=delivered,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)  # local queue full: let deliveries drain
            remaining = producer.flush(self.delivery_timeout + 5)
        except KafkaException as exc:
            self.close()
            raise PublishError(f"Kafka publish failed: {exc!r}") from exc
        if remaining or failures:
            self.close()
            raise PublishError(
                f"Kafka did not confirm the batch: {remaining} undelivered, "
                f"{len(failures)} failed ({failures[0] if failures else 'timeout'})"
            )

    def close(self) -> None:
        # A producer that failed may hold a fatal idempotence state; a fresh one starts clean.
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.flush(0)
