"""The wire contract between event producers (CDC engine, outbox relay) and consumers.

Every event is a CloudEvents 1.0 structured-mode JSON document::

    {"specversion": "1.0", "id": "...", "source": "/<system>/<part>",
     "type": "<domain>.<entity>.<happened>.v1", "subject": "order:123", "time": "2026-01-01T12:00:00.000000Z",
     "datacontenttype": "application/json", "traceparent": "00-<32 hex>-<16 hex>-01",
     "data": {...}}

- `type` ends with the version of its payload (`.v1`); the JSON schema of each type is
  `<type>.json` in one of settings.CDC_EVENT_SCHEMA_DIRS (each domain registers its own directory)
  and a publisher refuses an event that has no schema or does not match.
- `id` is stable: derived from the change's position in the source (WAL LSN, table, primary key)
  or the outbox row's id, so a redelivered change carries the same id. Consumers deduplicate on it.
- `subject` is the aggregate id, "<aggregate type>:<id>" ("order:123", "customer:7"). Events of
  one subject are published in the order of their changes. An order line's events carry the order's
  subject, so they stay ordered with the order's own events.
- Delivery is at least once: the engine commits its source position only after the broker
  confirmed the whole batch.

RabbitMQ: durable topic exchange `settings.CDC_EXCHANGE` (default "domain.events"), routing key =
event type, persistent delivery, content_type "application/cloudevents+json", message_id = event
id, header "aggregate_id" = subject.

Kafka: topic `settings.CDC_KAFKA_TOPIC` (default "domain.events"), key = subject, value = the
CloudEvent JSON; idempotent producer, acks=all, so one subject's events stay in one partition.
Headers (informative, the body is authoritative): content-type, ce_id, ce_type, aggregate_id.

Outbox rows (relayed by the outbox engine) have the Debezium default columns: id (uuid, becomes the
event id), aggregatetype ("order"), aggregateid ("123"), type (the versioned event type), payload
(jsonb, becomes `data`), traceparent (W3C, may be empty). Subject = "<aggregatetype>:<aggregateid>".
"""

SPEC_VERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"
# Content type of a structured-mode CloudEvent on the wire.
MESSAGE_CONTENT_TYPE = "application/cloudevents+json"
# AMQP header carrying the subject (aggregate id), so consumers can shard without parsing the body.
AGGREGATE_ID_HEADER = "aggregate_id"

DEFAULT_EXCHANGE = "domain.events"
DEFAULT_KAFKA_TOPIC = "domain.events"

TRANSPORT_RABBITMQ = "rabbitmq"
TRANSPORT_KAFKA = "kafka"
TRANSPORTS = (TRANSPORT_RABBITMQ, TRANSPORT_KAFKA)

# Outbox table columns (Debezium's outbox event router defaults, plus traceparent).
OUTBOX_COLUMNS = ("id", "aggregatetype", "aggregateid", "type", "payload", "traceparent")


def subject_of(aggregate_type: str, aggregate_id: object) -> str:
    return f"{aggregate_type}:{aggregate_id}"
