"""RabbitMQ publisher: durable topic exchange, persistent messages, one wait for the confirms of a
whole batch (STACK.md: 3,060 ev/s against 1,330 ev/s waiting for each confirm)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import amqp
import structlog
from kombu import Connection, Exchange

from cdc.contract import AGGREGATE_ID_HEADER, MESSAGE_CONTENT_TYPE
from cdc.transports import Event, PublishError, encode_events

logger = structlog.get_logger(__name__)


class RabbitMQPublisher:
    def __init__(self, *, url: str, exchange: str, confirm_timeout: float = 15.0) -> None:
        self.url = url
        self.exchange = Exchange(exchange, type="topic", durable=True)
        self.confirm_timeout = confirm_timeout
        self._connection: Connection | None = None
        self._channel: amqp.Channel | None = None
        self._published_tag = 0
        self._confirmed_tag = 0
        self._nacked = False

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._confirmed_tag = max(self._confirmed_tag, delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True

    def _open(self) -> amqp.Channel:
        if self._channel is not None:
            return self._channel
        connection = Connection(self.url, connect_timeout=5, heartbeat=0)
        connection.connect()
        channel = connection.channel()
        self.exchange.declare(channel=channel)
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._connection, self._channel = connection, channel
        self._published_tag = self._confirmed_tag = 0
        self._nacked = False
        logger.info("cdc.rabbitmq_connected", exchange=self.exchange.name)
        return channel

    def publish_batch(self, events: Sequence[Event]) -> None:
        bodies = encode_events(events)  # refuses the batch before anything is sent
        if not bodies:
            return
        try:
            channel = self._open()
            for event, body in zip(events, bodies, strict=True):
                message = amqp.Message(
                    body,
                    content_type=MESSAGE_CONTENT_TYPE,
                    delivery_mode=2,
                    message_id=event["id"],
                    type=event["type"],
                    application_headers={AGGREGATE_ID_HEADER: event["subject"]},
                )
                channel.basic_publish(message, exchange=self.exchange.name, routing_key=event["type"])
                self._published_tag += 1
            self._wait_for_confirms()
        except PublishError:
            self.close()
            raise
        except (TimeoutError, OSError, amqp.exceptions.AMQPError) as exc:
            self.close()
            raise PublishError(f"RabbitMQ publish failed: {exc!r}") from exc

    def _wait_for_confirms(self) -> None:
        assert self._connection is not None
        deadline = time.monotonic() + self.confirm_timeout
        while self._confirmed_tag < self._published_tag:
            if self._nacked:
                raise PublishError("RabbitMQ refused (nacked) a message of the batch")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(
                    f"RabbitMQ confirmed {self._confirmed_tag} of {self._published_tag} messages "
                    f"within {self.confirm_timeout} s"
                )
            try:
                self._connection.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        if self._nacked:
            raise PublishError("RabbitMQ refused (nacked) a message of the batch")

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
                pass
