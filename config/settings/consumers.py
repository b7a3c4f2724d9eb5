"""Settings of event consumers (RabbitMQ or Kafka) and of the transactional outbox."""

from config.settings.base import SERVICE
from config.settings.env import env

# The exchange, broker URLs and Kafka topic consumers read are the CDC_* ones in cdc.py.

# Modules that define consumer groups (each registers its groups when imported); by default the
# SERVICE's own, since a module imports its app's models, which only that SERVICE loads.
SERVICE_CONSUMER_MODULES = {
    "legacy": ["legacy.crm.consumers"],
    "crm": ["crm_app.consumers"],
    # The pricing service's projections: the catalogue's cost data (`consume pricing-catalogue`) and
    # the production orders behind the deprecated read API (`consume pricing-production-orders`).
    "mes_pricing": ["mes_pricing.catalogue.consumers", "mes_pricing.production_orders.consumers"],
    # shop-production-status (order status from mes_production's events).
    "shop": ["shop_app.consumers"],
    "mes_production": ["mes_production.consumers"],
}
CONSUMER_MODULES = env.list("CONSUMER_MODULES", default=SERVICE_CONSUMER_MODULES.get(SERVICE, []))
# "rabbitmq" or "kafka": the broker `manage.py consume` reads from.
CONSUMER_TRANSPORT = env.str("CONSUMER_TRANSPORT", default="rabbitmq")
# RabbitMQ: events are spread over this many partition queues by a hash of the aggregate id; each
# queue has one active consumer at a time, which keeps an aggregate's events in order. Changing
# it re-maps aggregates to partitions: drain the queues first.
CONSUMER_PARTITIONS = env.int("CONSUMER_PARTITIONS", default=4)
# Unacknowledged messages a consumer holds per partition queue.
CONSUMER_PREFETCH = env.int("CONSUMER_PREFETCH", default=20)
# Messages in hand handled in one database transaction (one commit, one disk flush); a batch
# never waits to fill, so a quiet consumer handles each event at once.
CONSUMER_BATCH_SIZE = env.int("CONSUMER_BATCH_SIZE", default=50)
# A failing handler is retried in place (later events of the same partition wait, keeping order),
# with exponential backoff, then the message is dead-lettered with the exception.
CONSUMER_MAX_ATTEMPTS = env.int("CONSUMER_MAX_ATTEMPTS", default=5)
CONSUMER_RETRY_BASE_SECONDS = env.float("CONSUMER_RETRY_BASE_SECONDS", default=0.5)
CONSUMER_RETRY_MAX_SECONDS = env.float("CONSUMER_RETRY_MAX_SECONDS", default=30.0)
# How often a RabbitMQ consumer checks it holds no more than its share of the partitions.
CONSUMER_REBALANCE_SECONDS = env.float("CONSUMER_REBALANCE_SECONDS", default=5.0)
CONSUMER_HEARTBEAT_SECONDS = env.int("CONSUMER_HEARTBEAT_SECONDS", default=30)
CONSUMER_KAFKA_SESSION_TIMEOUT_MS = env.int("CONSUMER_KAFKA_SESSION_TIMEOUT_MS", default=10_000)

# The concrete outbox model ("app_label.ModelName") `outbox_write` uses when not given one.
OUTBOX_MODEL = env.str("OUTBOX_MODEL", default="")
