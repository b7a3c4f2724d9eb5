"""The consumer framework over a real RabbitMQ and PostgreSQL, with `manage.py consume` processes:
idempotence through the inbox, crashes, dead letters, retries, graceful shutdown."""

import json
import signal
import time

import pytest

from harness.consumer_topology import group_topology_declare
from harness.rabbitmq_vhost import broker_address, url_through
from harness.waiting import wait_until
from legacy.crm.models import CrmInboxEntry
from tests.consumer_fixtures import PARTITIONS
from tests.consumer_probe import probe_effects
from tests.event_transport import amqp_drain, amqp_publish, amqp_publish_raw, amqp_queue_depths, cloud_event

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def recorded(aggregate: str, seq: int, **extra: object) -> dict:
    return cloud_event(
        "test.probe.recorded.v1", f"probe:{aggregate}", {"aggregate": aggregate, "seq": seq, **extra}
    )


def test_duplicate_event_has_no_second_effect(consumer_vhost, start_consumer, probe_table) -> None:  # type: ignore[no-untyped-def]
    group_topology_declare(consumer_vhost, "test-probe", partitions=PARTITIONS)
    event = recorded("a", 1)
    amqp_publish(consumer_vhost, [event, event])  # twice before the consumer runs: one batch
    consumer = start_consumer("test-probe")
    wait_until(
        lambda: consumer.metric("consumer_events_consumed_total", outcome="duplicate") == 1, seconds=15
    )
    amqp_publish(consumer_vhost, [event])  # and again later, as a redelivery would bring it
    wait_until(
        lambda: consumer.metric("consumer_events_consumed_total", outcome="duplicate") == 2, seconds=15
    )

    assert [(a, s, i) for a, s, i, _ in probe_effects()] == [("a", 1, event["id"])]
    assert CrmInboxEntry.objects.filter(consumer="test-probe", event_id=event["id"]).count() == 1
    assert consumer.metric("consumer_events_consumed_total", outcome="handled") == 1


def test_duplicate_confirmed_event_sends_one_production_request(consumer_vhost, start_consumer) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from legacy.crm.services import order_confirm
    from legacy.shop.models import Order
    from legacy.shop.services import OrderLineRequest, order_place
    from tests.event_transport import legacy_order_events
    from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

    PricingRuleFactory()
    product = ProductFactory()
    order = order_place(
        customer=CustomerFactory(), lines=[OrderLineRequest(sku=product.sku, quantity=2)], at=timezone.now()
    )
    order_confirm(order_id=order.id, actor="staff", at=timezone.now())
    confirmed = legacy_order_events(order)[-1]
    assert confirmed["type"] == "shop.order.confirmed.v1"
    consumer = start_consumer("legacy-orchestration")

    amqp_publish(consumer_vhost, [confirmed, confirmed])
    wait_until(
        lambda: consumer.metric("consumer_events_consumed_total", outcome="duplicate") == 1, seconds=15
    )

    # No Celery worker runs in this test: the MES's queue holds exactly what the CRM sent.
    assert amqp_queue_depths(consumer_vhost, ["mes"]) == {"mes": 1}
    (request,) = amqp_drain(consumer_vhost, "mes")
    assert json.loads(request.body)[1]["order_id"] == order.id
    assert Order.objects.get(id=order.id).sent_to_mes_at is not None


def test_consumer_killed_mid_batch_redelivers_without_second_effect(  # type: ignore[no-untyped-def]
    consumer_vhost, start_consumer, probe_table
) -> None:
    topology = group_topology_declare(consumer_vhost, "test-probe", partitions=PARTITIONS)
    # Event 5 kills its consumer right after its batch's transaction commits, before the acks: the
    # broker redelivers the batch and the inbox must recognise it. Then a second kill lands in the
    # middle of the next consumer's own work.
    events = [recorded("k", seq, sleep_seconds=0.05, kill_after_commit=seq == 5) for seq in range(1, 61)]
    amqp_publish(consumer_vhost, events)

    first = start_consumer("test-probe", tag="first")
    assert first.process.popen is not None
    first.process.popen.wait(timeout=30)
    assert first.process.popen.returncode == -signal.SIGKILL
    committed = [seq for _, seq, _, _ in probe_effects()]
    assert committed == list(range(1, len(committed) + 1)) and 5 in committed

    # The first consumer's batch is what it had prefetched (all 20 of its prefetch when the queue is
    # full), all committed: a count of effects says nothing of the second one's progress (a wait for
    # 20 effects let the kill land before it had read a message). Its own log does: it is killed
    # once it handles an event the first did not commit, i.e. after the redelivered batch (which
    # comes back first, at its place in the queue) and inside a batch of its own.
    second = start_consumer("test-probe", tag="second")
    wait_until(
        lambda: any(e["seq"] > len(committed) for e in second.log_events("probe.handling")),
        seconds=30,
        interval=0.02,
        what="the second consumer handling an event the first did not commit",
    )
    second.process.signal(signal.SIGKILL)
    assert second.process.popen is not None
    second.process.popen.wait(timeout=10)
    # Each log line is flushed when written, so these lines are in the file before the kill.
    assert events[4]["id"] in {e["event_id"] for e in second.log_events("consumer.duplicate_skipped")}
    assert min(e["seq"] for e in second.log_events("probe.handling")) == len(committed) + 1, (
        "no event the first consumer committed was handled again"
    )
    assert len(probe_effects()) < 60, "the second kill came mid-stream"

    start_consumer("test-probe", tag="third")
    wait_until(lambda: len(probe_effects()) == 60, seconds=30)
    wait_until(
        lambda: sum(amqp_queue_depths(consumer_vhost, topology.partition_queues).values()) == 0, seconds=10
    )
    time.sleep(0.5)  # anything redelivered twice would show up now
    assert [seq for _, seq, _, _ in probe_effects()] == list(range(1, 61)), "one effect per event, in order"


def test_malformed_and_unknown_messages_are_dead_lettered_and_consumer_keeps_going(  # type: ignore[no-untyped-def]
    consumer_vhost, start_consumer, probe_table
) -> None:
    consumer = start_consumer("test-probe")
    rk = "test.probe.recorded.v1"
    amqp_publish_raw(consumer_vhost, b"{not json", routing_key=rk, headers={"aggregate_id": "probe:x"})
    amqp_publish_raw(
        consumer_vhost, b'{"hello": "world"}', routing_key=rk, headers={"aggregate_id": "probe:x"}
    )
    unknown = cloud_event("test.probe.recorded.v2", "probe:x", {"aggregate": "x", "seq": 1})
    bad_schema = cloud_event("test.probe.recorded.v1", "probe:x", {"aggregate": "x", "seq": "one"})
    good = recorded("x", 7)
    amqp_publish(consumer_vhost, [unknown, bad_schema, good])

    wait_until(lambda: consumer.metric("consumer_events_consumed_total", outcome="handled") == 1, seconds=15)
    dead = amqp_drain(consumer_vhost, "test-probe.dead-letter")
    reasons = sorted(m.headers["x-death-reason"] for m in dead)
    assert reasons == ["not_cloudevent", "not_json", "schema_mismatch", "unknown_type"]
    by_reason = {m.headers["x-death-reason"]: m for m in dead}
    assert by_reason["not_json"].body == b"{not json"
    assert by_reason["unknown_type"].headers["x-original-routing-key"] == "test.probe.recorded.v2"
    assert "no handler for test.probe.recorded.v2" in by_reason["unknown_type"].headers["x-exception"]
    assert "seq" in by_reason["schema_mismatch"].headers["x-exception"]
    assert by_reason["schema_mismatch"].properties["message_id"] == bad_schema["id"]
    assert all(m.headers["x-consumer-group"] == "test-probe" for m in dead)
    assert [(a, s) for a, s, _, _ in probe_effects()] == [("x", 7)]
    assert consumer.metric("consumer_events_dead_lettered_total") == 4


def test_failing_handler_is_retried_then_dead_lettered(consumer_vhost, start_consumer, probe_table) -> None:  # type: ignore[no-untyped-def]
    group_topology_declare(consumer_vhost, "test-probe", partitions=PARTITIONS)
    failing = cloud_event("test.probe.failing.v1", "probe:f", {"seq": 3})
    # One batch: the failure rolls back the two events before it, which are redone once.
    amqp_publish(consumer_vhost, [recorded("f", 1), recorded("f", 2), failing, recorded("f", 4)])
    consumer = start_consumer("test-probe")

    wait_until(lambda: consumer.metric("consumer_events_consumed_total", outcome="handled") == 3, seconds=15)
    assert [(a, s) for a, s, _, _ in probe_effects()] == [("f", 1), ("f", 2), ("f", 4)]
    (dead,) = amqp_drain(consumer_vhost, "test-probe.dead-letter")
    assert dead.headers["x-death-reason"] == "handler_failed"
    assert dead.headers["x-attempts"] == 3
    assert dead.headers["x-exception"] == "RuntimeError: probe handler fails on purpose (seq 3)"
    assert dead.headers["x-original-routing-key"] == "test.probe.failing.v1"
    assert dead.headers["aggregate_id"] == "probe:f"
    assert json.loads(dead.body)["id"] == failing["id"]
    assert consumer.metric("consumer_handler_failures_total", event_type="test.probe.failing.v1") == 3
    assert len(consumer.log_events("consumer.handler_failed")) == 3
    assert not CrmInboxEntry.objects.filter(event_id=failing["id"]).exists()


def test_sigterm_finishes_the_message_in_hand_then_exits(consumer_vhost, start_consumer, probe_table) -> None:  # type: ignore[no-untyped-def]
    topology = group_topology_declare(consumer_vhost, "test-probe", partitions=PARTITIONS)
    amqp_publish(consumer_vhost, [recorded("g", seq, sleep_seconds=1.5) for seq in range(1, 6)])
    consumer = start_consumer("test-probe")
    wait_until(lambda: consumer.log_events("probe.handling"), seconds=15, interval=0.02)

    consumer.process.signal(signal.SIGTERM)
    assert consumer.process.popen is not None
    consumer.process.popen.wait(timeout=15)

    assert consumer.process.popen.returncode == 0
    assert [(a, s) for a, s, _, _ in probe_effects()] == [("g", 1)], "the message in hand was finished"
    assert consumer.log_events("consumer.stopped")
    # Acknowledged: only the four others are back in the queue for the next consumer, which
    # handles them (their inbox claims in the stopped batch were given back).
    assert sum(amqp_queue_depths(consumer_vhost, topology.partition_queues).values()) == 4
    start_consumer("test-probe", tag="after")
    wait_until(lambda: len(probe_effects()) == 5, seconds=30)
    assert [s for _, s, _, _ in probe_effects()] == [1, 2, 3, 4, 5]


def test_consumer_reconnects_after_losing_the_broker_without_second_effect(  # type: ignore[no-untyped-def]
    consumer_vhost, start_consumer, probe_table
) -> None:
    from harness.tcp_forwarder import TcpForwarder

    group_topology_declare(consumer_vhost, "test-probe", partitions=PARTITIONS)
    events = [recorded(f"r{seq % 3}", seq, sleep_seconds=0.01) for seq in range(1, 301)]
    amqp_publish(consumer_vhost, events)
    with TcpForwarder(*broker_address(consumer_vhost)) as forwarder:
        consumer = start_consumer(
            "test-probe", env={"CDC_AMQP_URL": url_through(consumer_vhost, port=forwarder.port)}
        )
        wait_until(lambda: len(probe_effects()) >= 60, seconds=30)
        forwarder.cut()  # mid-stream: acks and deliveries in flight are lost
        wait_until(lambda: len(probe_effects()) == 300, seconds=60)
        time.sleep(0.5)

    assert consumer.log_events("consumer.broker_unavailable"), "the consumer saw the connection go"
    assert consumer.process.alive()
    effects = probe_effects()
    assert sorted(s for _, s, _, _ in effects) == list(range(1, 301)), "one effect per event"
    for aggregate in ("r0", "r1", "r2"):
        seqs = [s for a, s, _, _ in effects if a == aggregate]
        assert seqs == sorted(seqs), "each aggregate stayed in order"
