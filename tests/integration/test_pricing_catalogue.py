"""The pricing service's catalogue cost projection, fed by catalogue events: the legacy `catalogue`
capture (`SERVICE=cdc manage.py cdc run --capture catalogue`, a real Debezium engine on its own slot)
publishes row-state events to RabbitMQ; `SERVICE=mes_pricing manage.py consume pricing-catalogue`
applies them to the pricing database. Every cost column of every row must match legacy within
seconds: the rows that existed before the capture started (its initial snapshot), then inserts,
updates and deletes; a consumer killed with SIGKILL mid-stream loses nothing and applies nothing twice.
"""

from __future__ import annotations

import signal
import statistics
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import kombu
import pytest
from django.db.models import F

import mes_pricing.catalogue.consumers  # noqa: F401 (registers the group whose queues the test declares)
from harness.consumer_topology import group_topology_declare
from harness.waiting import wait_until
from legacy.shop import catalogue_events
from legacy.shop.models import Material, Product, ProductMaterial, ProductOption
from mes_pricing.catalogue.models import (
    CostMaterial,
    CostProduct,
    CostProductMaterial,
    CostProductOption,
    PricingCatalogueInboxEntry,
)
from tests.cdc_fixtures import EventCollector, cdc_child_env, engine_process, unique_name
from tests.consumer_fixtures import PARTITIONS, StartConsumer
from tests.event_transport import amqp_publish, cloud_event
from tests.factories import MaterialFactory, ProductFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "control", "pricing"]),
]
GROUP = "pricing-catalogue"
CONSUMER = {"SERVICE": "mes_pricing", "CONSUMER_MODULES": "mes_pricing.catalogue.consumers"}
# "Within seconds": the longest a change may take from the legacy commit to the projection.
MAX_LAG_SECONDS = 10.0


def legacy_costs() -> dict[str, dict[int, tuple[Any, ...]]]:
    """Every cost column of every catalogue row in the legacy database."""
    return {
        "material": {m.id: (m.code, m.unit_cost) for m in Material.objects.all()},
        "product": {p.id: (p.sku, p.labour_minutes, p.active) for p in Product.objects.all()},
        "product_material": {
            line.id: (line.product_id, line.material_id, line.quantity)
            for line in ProductMaterial.objects.all()
        },
        "product_option": {
            o.id: (
                o.product_id,
                o.code,
                o.extra_material_id,
                o.extra_material_quantity,
                o.extra_labour_minutes,
            )
            for o in ProductOption.objects.all()
        },
    }


def projection_costs() -> dict[str, dict[int, tuple[Any, ...]]]:
    """The same columns of the projection in the pricing database."""
    return {
        "material": {m.id: (m.code, m.unit_cost) for m in CostMaterial.objects.all()},
        "product": {p.id: (p.sku, p.labour_minutes, p.active) for p in CostProduct.objects.all()},
        "product_material": {
            line.id: (line.product_id, line.material_id, line.quantity)
            for line in CostProductMaterial.objects.all()
        },
        "product_option": {
            o.id: (
                o.product_id,
                o.code,
                o.extra_material_id,
                o.extra_material_quantity,
                o.extra_labour_minutes,
            )
            for o in CostProductOption.objects.all()
        },
    }


def wait_matching(*, seconds: float = MAX_LAG_SECONDS, what: str = "projection equal to legacy") -> float:
    """Seconds until the projection equals legacy (fails after `seconds`)."""
    started = time.monotonic()
    expected = legacy_costs()
    wait_until(lambda: projection_costs() == expected, seconds=seconds, interval=0.02, what=what)
    return time.monotonic() - started


@pytest.fixture
def catalogue_queues(amqp_url: str) -> Iterator[None]:
    """The group's queues on the session vhost, where the engine publishes; deleted after the test."""
    topology = group_topology_declare(amqp_url, GROUP, partitions=PARTITIONS)
    yield
    with kombu.Connection(amqp_url) as connection:
        channel = connection.channel()
        for queue in [*topology.partition_queues, topology.dead_letter]:
            channel.queue_delete(queue)
        channel.exchange_delete(topology.partition_exchange)
        channel.exchange_delete(topology.dead_letter)


@pytest.fixture
def catalogue_engine(live_env: dict[str, str], worker_id: str) -> Iterator[Any]:
    """`SERVICE=cdc manage.py cdc run --capture catalogue` on a slot of this test's own."""
    from cdc.captures import capture_engine_config, capture_load
    from harness.engine_slot import engine_on_slot

    base = capture_engine_config(capture_load(catalogue_events.CAPTURE_NAME))
    config = engine_on_slot(base, slot=unique_name(worker_id, "catalogue"))

    def start() -> Any:
        return engine_process(
            config, cdc_child_env(live_env, config), tag="catalogue", args=("--capture", "catalogue")
        )

    return start


def catalogue_seed(products: int) -> list[Product]:
    made = [ProductFactory() for _ in range(products)]
    MaterialFactory(code=f"SPARE-{uuid.uuid4().hex[:6]}", unit_cost=Decimal("3.1416"))
    return made


def test_projection_follows_the_catalogue_from_its_snapshot_on(
    catalogue_queues: None, catalogue_engine: Any, amqp_url: str, start_consumer: StartConsumer
) -> None:
    # Rows that exist before the capture starts reach the projection through the initial snapshot.
    products = catalogue_seed(5)
    consumer = start_consumer(GROUP, env={**CONSUMER, "CDC_AMQP_URL": amqp_url})
    with catalogue_engine() as engine:
        # Changes while the engine starts (after its slot exists, most likely before its snapshot):
        # streamed again after the snapshot, they must end in the current state, not an older one.
        products[4].materials.update(quantity=Decimal("3.3000"))
        products[4].options.all().delete()
        ProductFactory()
        initial = wait_matching(seconds=90, what="the initial snapshot in the projection")
        rows = {table: len(values) for table, values in legacy_costs().items()}
        print(f"\ninitial fill (engine start + snapshot of {rows}) {initial:.2f} s")
        assert engine.alive()

        lags = []
        for index in range(20):  # one cost change at a time: commit-to-projection lag
            material = Material.objects.order_by("id")[index % Material.objects.count()]
            material.unit_cost += Decimal("0.0101")
            material.save(update_fields=["unit_cost"])
            lags.append(wait_matching(what=f"unit cost change {index}"))
        print(
            f"single change lag: p50 {statistics.median(lags) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
        )

        # Inserts, updates of every kind of cost column, and deletes (a line, an option, a product
        # with everything it has, a material nobody uses).
        more = catalogue_seed(2)
        first = products[0]
        first.labour_minutes, first.active = 95, False
        first.save()
        line = first.materials.get()
        line.quantity = Decimal("7.2500")
        line.save()
        option = first.options.get()
        option.extra_material_quantity, option.extra_labour_minutes, option.extra_material = (
            Decimal("1.5"),
            3,
            None,
        )
        option.save()
        first.sku = "RENAMED-" + first.sku
        first.save()
        products[1].materials.all().delete()
        products[2].options.all().delete()
        spare = Material.objects.filter(code__startswith="SPARE-").first()
        assert spare is not None
        spare.delete()
        products[3].delete()
        more[0].name = "a name is no cost column"
        more[0].save()
        lag = wait_matching(what="inserts, updates and deletes")
        print(f"mixed batch of changes applied in {lag * 1000:.0f} ms")
        assert projection_costs()["product"][first.id] == (first.sku, 95, False)
        assert products[3].id not in projection_costs()["product"]
        assert not CostProductMaterial.objects.filter(product_id=products[1].id).exists()
        assert consumer.metric("consumer_events_consumed_total", outcome="dead_lettered") == 0


def test_a_consumer_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    catalogue_queues: None,
    catalogue_engine: Any,
    amqp_url: str,
    start_consumer: StartConsumer,
    event_collector: EventCollector,
) -> None:
    seen_before = {e["id"] for e in event_collector.events()}
    catalogue_seed(20)
    consumer = start_consumer(GROUP, tag="first", env={**CONSUMER, "CDC_AMQP_URL": amqp_url})
    with catalogue_engine():
        wait_matching(seconds=90, what="the initial snapshot in the projection")
        snapshot = PricingCatalogueInboxEntry.objects.count()
        # A burst faster than the consumer applies it: each statement changes every material's
        # cost or every line's quantity (one event per row).
        rounds = 100
        for index in range(rounds):
            if index % 2:
                Material.objects.update(unit_cost=F("unit_cost") + Decimal("0.0001"))
            else:
                ProductMaterial.objects.update(quantity=F("quantity") + Decimal("0.0001"))
        changes = rounds // 2 * (Material.objects.count() + ProductMaterial.objects.count())
        # Killed while it works through the burst, half way.
        wait_until(
            lambda: PricingCatalogueInboxEntry.objects.count() >= snapshot + changes // 2,
            seconds=60,
            interval=0.005,
            what="half of the burst applied",
        )
        consumer.process.signal(signal.SIGKILL)
        assert consumer.process.popen is not None
        consumer.process.popen.wait(timeout=10)
        killed_at = PricingCatalogueInboxEntry.objects.count()
        restarted = start_consumer(GROUP, tag="restarted", env={**CONSUMER, "CDC_AMQP_URL": amqp_url})
        lag = wait_matching(seconds=60, what="the projection after the consumer's restart")
        print(
            f"\nburst of {changes} changes; consumer killed with {killed_at - snapshot} of them applied; "
            f"the restarted one matched legacy {lag:.2f} s after its start"
        )

        def published() -> set[str]:
            return {
                e["id"]
                for e in event_collector.events(lambda e: e["type"] in catalogue_events.EVENT_TYPES)
                if e["id"] not in seen_before
            }

        # Every event the engine published was applied once: the inbox holds each id exactly once
        # (a unique key), no other, and the projection equals legacy.
        wait_until(
            lambda: set(PricingCatalogueInboxEntry.objects.values_list("event_id", flat=True)) == published(),
            seconds=30,
            what="every published event in the inbox",
        )
        inbox = list(PricingCatalogueInboxEntry.objects.values_list("event_id", flat=True))
        assert len(inbox) == len(set(inbox)) == len(published()) >= changes
        assert projection_costs() == legacy_costs()
        duplicates = restarted.metric("consumer_events_consumed_total", outcome="duplicate")
        print(
            f"events published and applied: {len(inbox)}; "
            f"redelivered and recognised as duplicates: {duplicates:.0f}"
        )
        # The kill happened mid-stream: events were still to be applied.
        assert snapshot < killed_at < len(inbox)


def test_the_same_event_twice_has_no_second_effect(
    consumer_vhost: str, start_consumer: StartConsumer
) -> None:
    group_topology_declare(consumer_vhost, GROUP, partitions=PARTITIONS)
    data = {"material_id": 41, "code": "OAK", "name": "Oak", "unit": "m2", "unit_cost": "10.0000"}
    first = cloud_event("shop.material.changed.v1", "material:41", data, source="/legacy/shop")
    second = cloud_event(
        "shop.material.changed.v1", "material:41", {**data, "unit_cost": "11.0000"}, source="/legacy/shop"
    )
    amqp_publish(consumer_vhost, [first, second, first])

    consumer = start_consumer(GROUP, env=CONSUMER)
    wait_until(lambda: consumer.metric("consumer_events_consumed_total", outcome="handled") == 2, seconds=20)
    wait_until(
        lambda: consumer.metric("consumer_events_consumed_total", outcome="duplicate") == 1, seconds=20
    )
    # The first event again did not set the cost back: it was recognised, not applied.
    assert CostMaterial.objects.get(id=41).unit_cost == Decimal("11.0000")
    assert sorted(PricingCatalogueInboxEntry.objects.values_list("event_id", flat=True)) == sorted(
        [first["id"], second["id"]]
    )
