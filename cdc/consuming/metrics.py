"""Prometheus metrics of consumer processes (served by `manage.py consume` on METRICS_PORT)."""

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter(
    "consumer_events_consumed_total",
    "Events taken off the broker and settled, by outcome (handled, duplicate, not_subscribed)",
    ["group", "outcome"],
)
FAILED = Counter(
    "consumer_handler_failures_total",
    "Handler attempts that raised (each retry counts)",
    ["group", "event_type"],
)
DEAD_LETTERED = Counter(
    "consumer_events_dead_lettered_total",
    "Messages sent to the dead-letter queue, by reason",
    ["group", "reason"],
)
HANDLER_LATENCY = Histogram(
    "consumer_handler_duration_seconds",
    "Time of one successful handler transaction (inbox claim + effect + commit)",
    ["group", "event_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_MESSAGES_READY = Gauge(
    "consumer_queue_messages_ready",
    "Messages ready in the group's broker queues (partition queues: consumer lag; .dead-letter: unresolved)",
    ["group", "queue"],
)
PARTITIONS_ACTIVE = Gauge(
    "consumer_partitions_active",
    "Partition queues on which this process is the active consumer (known from deliveries)",
    ["group"],
)
