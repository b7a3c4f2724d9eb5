"""Prometheus metrics of `manage.py migrate_data sync`: lag and applied changes per stream."""

from prometheus_client import Counter, Gauge, Histogram

LABELS = ["slice", "direction"]

SYNC_LAG_SECONDS = Gauge(
    "migration_sync_lag_seconds",
    "Apply time minus the source commit time of the last change (or heartbeat) the stream applied",
    LABELS,
)
SYNC_BATCH_LAG_SECONDS = Histogram(
    "migration_sync_batch_lag_seconds",
    "Lag of each applied batch: apply time minus the source commit time of its last change",
    LABELS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60),
)
SYNC_CHANGES = Counter("migration_sync_changes_total", "Row changes applied by the stream", LABELS)
SYNC_ECHOES = Counter(
    "migration_sync_echoes_dropped_total", "Changes dropped as the other direction's own writes", LABELS
)
SYNC_BATCHES = Counter("migration_sync_batches_total", "Batches handled", [*LABELS, "outcome"])
SYNC_BATCH_SECONDS = Histogram(
    "migration_sync_batch_seconds",
    "Time to apply one batch in one target transaction",
    LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SYNC_STREAM_RUNNING = Gauge("migration_sync_stream_running", "1 while the stream's engine runs", LABELS)
