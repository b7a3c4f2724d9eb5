"""The CRM's event consumers: in events mode, a confirmed order goes to the MES when its
shop.order.confirmed event arrives instead of when the polling loop finds it.

Run with `SERVICE=legacy manage.py consume legacy-orchestration`. The inbox and the order rows
share the legacy database, so a redelivered event has no second effect. The production request
is published inside the transaction, as the polling loop does: a crash before commit resends it,
which the MES absorbs (one production order per shop order); publishing after commit could lose it.
"""

from dataclasses import dataclass

from django.utils import timezone

from cdc.consuming.envelope import CloudEvent
from cdc.consuming.groups import ConsumerGroup
from legacy.crm.models import CrmInboxEntry
from legacy.crm.orchestrator import order_production_dispatch

orchestration = ConsumerGroup("legacy-orchestration", service="legacy", inbox=CrmInboxEntry)


@dataclass(frozen=True)
class OrderConfirmed:
    """What this consumer needs of shop.order.confirmed.v1: the order's lines are read from the
    shared database, which is this consumer's own (so no projection of order lines is kept)."""

    order_id: int


@orchestration.handles("shop.order.confirmed.v1", OrderConfirmed)
def order_confirmed(event: OrderConfirmed, meta: CloudEvent) -> None:
    from legacy.mes.tasks import start_production

    order_production_dispatch(
        order_id=event.order_id,
        at=timezone.now(),
        send=lambda request: start_production.apply_async(kwargs=request),
    )
