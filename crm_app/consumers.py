"""The CRM service's event consumers: the shop's deletions of customers and orders delete their
notes, which legacy did with ON DELETE CASCADE foreign keys (notes and orders now live in two
databases, so no key can).

Run with `SERVICE=crm manage.py consume crm`. The inbox (crm_inbox) and the notes share the crm
database, so a redelivered event has no second effect (and deleting again would change nothing).
"""

from dataclasses import dataclass

from cdc.consuming.envelope import CloudEvent
from cdc.consuming.groups import ConsumerGroup
from crm_app.models import CrmInboxEntry
from crm_app.services import customer_notes_delete, order_notes_delete

crm = ConsumerGroup("crm", service="crm", inbox=CrmInboxEntry)


@dataclass(frozen=True)
class CustomerDeleted:
    customer_id: int


@dataclass(frozen=True)
class OrderDeleted:
    order_id: int


@crm.handles("shop.customer.deleted.v1", CustomerDeleted)
def customer_deleted(event: CustomerDeleted, meta: CloudEvent) -> None:
    customer_notes_delete(customer_id=event.customer_id)


@crm.handles("shop.order.deleted.v1", OrderDeleted)
def order_deleted(event: OrderDeleted, meta: CloudEvent) -> None:
    order_notes_delete(order_id=event.order_id)
