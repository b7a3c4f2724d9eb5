"""The CRM service's consumer group over a real RabbitMQ and the crm database, run as
`SERVICE=crm manage.py consume crm`: the shop's deletions of customers and orders delete their
notes (legacy's ON DELETE CASCADE, now across two databases), once per event."""

from datetime import UTC, datetime

import pytest

import crm_app.consumers  # noqa: F401 (registers the group this test process declares queues for)
from crm_app.models import CrmInboxEntry, Note
from harness.consumer_topology import group_topology_declare
from harness.waiting import wait_until
from tests.consumer_fixtures import PARTITIONS
from tests.event_transport import amqp_publish, cloud_event

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases=["default", "crm"])]
CRM_CONSUMER = {"SERVICE": "crm", "CONSUMER_MODULES": "crm_app.consumers"}


def notes_create(pairs: list[tuple[int, int | None]]) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for customer_id, order_id in pairs:
        Note.objects.create(
            customer_id=customer_id, order_id=order_id, author="staff", text="t", created_at=at
        )


def test_deleted_customers_and_orders_take_their_notes_once(consumer_vhost, start_consumer) -> None:  # type: ignore[no-untyped-def]
    notes_create([(1, 10), (1, 11), (1, None), (2, 20), (2, 21), (3, 30)])
    group_topology_declare(consumer_vhost, "crm", partitions=PARTITIONS)
    customer_deleted = cloud_event(
        "shop.customer.deleted.v1", "customer:1", {"customer_id": 1}, source="/shop/shop_outbox"
    )
    order_deleted = cloud_event("shop.order.deleted.v1", "order:20", {"order_id": 20}, source="/legacy/shop")
    amqp_publish(consumer_vhost, [customer_deleted, order_deleted, customer_deleted])

    consumer = start_consumer("crm", env=CRM_CONSUMER)
    wait_until(lambda: consumer.metric("consumer_events_consumed_total", outcome="handled") == 2, seconds=20)
    wait_until(
        lambda: consumer.metric("consumer_events_consumed_total", outcome="duplicate") == 1, seconds=20
    )
    # Notes the deletions did not name stay; a note written after a deletion stays too when the
    # deletion arrives again (a redelivery has no second effect).
    notes_create([(1, 12)])
    amqp_publish(consumer_vhost, [customer_deleted])
    wait_until(
        lambda: consumer.metric("consumer_events_consumed_total", outcome="duplicate") == 2, seconds=20
    )

    assert sorted(Note.objects.values_list("customer_id", "order_id")) == [(1, 12), (2, 21), (3, 30)]
    inbox = CrmInboxEntry.objects.filter(consumer="crm")
    assert sorted(inbox.values_list("event_id", flat=True)) == sorted(
        [customer_deleted["id"], order_deleted["id"]]
    )
