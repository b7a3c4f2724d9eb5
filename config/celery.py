"""The Celery application every worker and scheduler process runs."""

import os

from ops.celery_logs import JsonLoggingCelery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = JsonLoggingCelery("config")  # worker and beat write JSON lines only (ops/celery_logs.py)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Tasks finished per task and outcome, on METRICS_PORT when set (ops/celery_metrics.py).
from ops.celery_metrics import celery_metrics_connect  # noqa: E402

celery_metrics_connect()
