"""Broker and Celery settings (RabbitMQ through kombu)."""

from pathlib import Path

from config.settings.env import env

AMQP_URL = env.str("AMQP_URL", default="amqp://guest:guest@127.0.0.1:5672//")

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=AMQP_URL)
# `filesystem://` (kombu's filesystem transport: each message a file in CELERY_FILESYSTEM_DIR) is
# what `manage.py demo` gives the monolith's Celery on a machine without RabbitMQ; one machine only.
if CELERY_BROKER_URL.startswith("filesystem://"):
    _CELERY_FOLDER = Path(env.str("CELERY_FILESYSTEM_DIR", default=".local/celery-broker")).resolve()
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_CELERY_FOLDER / "queues"),
        "data_folder_out": str(_CELERY_FOLDER / "queues"),
        "control_folder": str(_CELERY_FOLDER / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged after it ran, so a worker killed mid-task has it redelivered.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_PREFETCH_MULTIPLIER", default=4)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = "legacy"
# The monolith's integration: the CRM sends production requests to the MES queue and the MES
# replies on the CRM queue, both over RabbitMQ.
CELERY_TASK_ROUTES = {
    "legacy.mes.tasks.*": {"queue": "mes"},
    "legacy.crm.tasks.apply_production_status": {"queue": "crm"},
    "legacy.crm.tasks.poll_confirmed_orders": {"queue": "crm"},
}
