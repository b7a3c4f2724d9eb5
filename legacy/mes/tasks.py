"""MES worker tasks: take production requests from the CRM, advance stages, report back.

With MES_PRODUCTION=service production runs in mes_production: a request or an advance still
delivered to these tasks (queued before the switch) is logged and changes nothing.
"""

import structlog
from celery import shared_task
from celery.worker.control import inspect_command
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from legacy.mes.services import production_advance, production_order_create

logger = structlog.get_logger(__name__)


@inspect_command()
def mes_production_mode(state: object) -> dict[str, str]:
    """Which production mode this worker runs (`manage.py mes_production_handover_check` asks every
    worker before the production slice's cutover: none may still run the legacy MES)."""
    return {"mes_production": settings.MES_PRODUCTION}


def _retired(task: str, **ids: int) -> bool:
    if settings.MES_PRODUCTION != "service":
        return False
    # A warning: a message reaching the retired MES is something the operator should see.
    logger.warning("mes.task_ignored", task=task, why="MES_PRODUCTION=service", **ids)
    return True


def _report(order_id: int, stage: str, at: str) -> None:
    from legacy.crm.tasks import apply_production_status

    transaction.on_commit(
        lambda: apply_production_status.apply_async(kwargs={"order_id": order_id, "stage": stage, "at": at})
    )


def _schedule_advance(production_order_id: int) -> None:
    transaction.on_commit(
        lambda: advance_production.apply_async(
            kwargs={"production_order_id": production_order_id}, countdown=settings.MES_STAGE_SECONDS
        )
    )


@shared_task(name="legacy.mes.tasks.start_production", ignore_result=True)
def start_production(order_id: int, order_public_id: str, lines: list[dict]) -> None:
    if _retired("start_production", order_id=order_id):
        return
    now = timezone.now()
    production, created = production_order_create(
        order_id=order_id, order_public_id=order_public_id, lines=lines, at=now
    )
    if created:
        _report(order_id, production.status, now.isoformat())
        _schedule_advance(production.id)


@shared_task(name="legacy.mes.tasks.advance_production", ignore_result=True)
def advance_production(production_order_id: int) -> None:
    if _retired("advance_production", production_order_id=production_order_id):
        return
    now = timezone.now()
    production = production_advance(production_order_id=production_order_id, at=now)
    if production is None:
        return
    _report(production.order_id, production.status, now.isoformat())
    if production.status != "done":
        _schedule_advance(production.id)
