"""CRM worker tasks: the periodic poll of the shared database, and the MES's status replies."""

from datetime import datetime

import structlog
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from legacy.crm.orchestrator import confirmed_orders_dispatch_all
from legacy.crm.services import production_status_apply

logger = structlog.get_logger(__name__)


@shared_task(name="legacy.crm.tasks.poll_confirmed_orders", ignore_result=True)
def poll_confirmed_orders() -> int:
    if settings.ORCHESTRATION_MODE != "polling":
        return 0
    if settings.MES_PRODUCTION == "service":
        # A poll scheduled before the switch: mes_production takes confirmed orders from events.
        logger.info("crm.poll_skipped", why="MES_PRODUCTION=service")
        return 0
    from legacy.mes.tasks import start_production

    return confirmed_orders_dispatch_all(
        batch_size=settings.CRM_POLL_BATCH_SIZE,
        at=timezone.now(),
        send=lambda request: start_production.apply_async(kwargs=request),
    )


@shared_task(name="legacy.crm.tasks.apply_production_status", ignore_result=True)
def apply_production_status(order_id: int, stage: str, at: str) -> None:
    production_status_apply(order_id=order_id, stage=stage, at=datetime.fromisoformat(at))
