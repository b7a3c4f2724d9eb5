"""Business settings of the legacy system: how the CRM orchestrates and how fast the MES works."""

from config.settings.env import env

# "polling": the CRM's periodic task polls the shared database (today's behaviour).
ORCHESTRATION_MODE = env.str("ORCHESTRATION_MODE", default="polling")
CRM_POLL_INTERVAL_SECONDS = env.float("CRM_POLL_INTERVAL_SECONDS", default=5.0)
CRM_POLL_BATCH_SIZE = env.int("CRM_POLL_BATCH_SIZE", default=200)
# Simulated duration of each production stage (queued -> cutting -> ... -> done).
MES_STAGE_SECONDS = env.float("MES_STAGE_SECONDS", default=1.0)
MES_API_RATE_LIMIT = env.str("MES_API_RATE_LIMIT", default="6000/min")

CELERY_BEAT_SCHEDULE = (
    {
        "crm-poll-confirmed-orders": {
            "task": "legacy.crm.tasks.poll_confirmed_orders",
            "schedule": CRM_POLL_INTERVAL_SECONDS,
        }
    }
    if ORCHESTRATION_MODE == "polling"
    else {}
)
SERVICE_PROCESSES = {"legacy": "legacy.processes:legacy_process_commands"}  # ops.process_group starts them
