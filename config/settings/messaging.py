"""Broker and Celery settings (RabbitMQ through kombu)."""

from config.settings.env import env

AMQP_URL = env.str("AMQP_URL", default="amqp://guest:guest@127.0.0.1:5672//")

CELERY_BROKER_URL = AMQP_URL
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
