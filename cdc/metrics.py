"""Prometheus metrics of the CDC engines: published events, batches, restarts, dead letters, slot
lag and the retained-WAL alert."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PUBLISHED = Counter("cdc_events_published_total", "Events confirmed by the broker", ["engine", "type"])
BATCHES = Counter("cdc_batches_total", "Batches handled", ["engine", "outcome"])
BATCH_SECONDS = Histogram(
    "cdc_batch_seconds",
    "Time to translate, publish and get confirms for one batch",
    ["engine"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)
COMMIT_TO_PUBLISH_SECONDS = Histogram(
    "cdc_commit_to_publish_seconds",
    "From the source transaction's commit to the broker's confirm (last event of a batch)",
    ["engine"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ENGINE_RESTARTS = Counter("cdc_engine_restarts_total", "Engine restarts after a failure", ["engine"])
ENGINE_RUNNING = Gauge("cdc_engine_running", "1 while the engine is streaming", ["engine"])
SLOT_LAG_BYTES = Gauge("cdc_slot_lag_bytes", "WAL not yet confirmed by the engine", ["slot"])
SLOT_RETAINED_WAL_BYTES = Gauge("cdc_slot_retained_wal_bytes", "WAL the server keeps for the slot", ["slot"])
SLOT_RETAINED_WAL_ALERT = Gauge(
    "cdc_slot_retained_wal_alert",
    "1 when the slot retains more WAL than CDC_MAX_RETAINED_WAL_BYTES",
    ["slot"],
)
OUTBOX_BACKLOG_ROWS = Gauge(
    "outbox_backlog_rows",
    "Outbox rows written after the commit of the last row the relay published (not yet relayed)",
    ["table"],
)
DEAD_LETTERS = Counter(
    "cdc_dead_letters_total",
    "Changes stored as dead letters instead of stopping the stream, by capture and reason",
    ["capture", "reason"],
)
