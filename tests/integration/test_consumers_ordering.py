"""Competing consumer processes of one group share the partitions and keep each aggregate's
events in order, also when partitions move between them (rebalance, a killed process)."""

import signal
from collections import defaultdict

import pytest

from harness.consumer_topology import group_topology_declare
from harness.waiting import wait_until
from tests.consumer_fixtures import PARTITIONS
from tests.consumer_probe import probe_effects
from tests.event_transport import amqp_publish, cloud_event

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

AGGREGATES = [f"order:{n}" for n in range(1, 25)]


def events_for(seqs: range) -> list[dict]:
    """Every aggregate's events `seqs`, interleaved across aggregates as a busy shop writes them."""
    return [
        cloud_event(
            "test.probe.recorded.v1", aggregate, {"aggregate": aggregate, "seq": seq, "sleep_seconds": 0.01}
        )
        for seq in seqs
        for aggregate in AGGREGATES
    ]


def test_competing_consumers_keep_each_aggregates_order(consumer_vhost, start_consumer, probe_table) -> None:  # type: ignore[no-untyped-def]
    group_topology_declare(consumer_vhost, "test-probe", partitions=PARTITIONS)
    first = start_consumer("test-probe", tag="first")
    second = start_consumer("test-probe", tag="second")

    amqp_publish(consumer_vhost, events_for(range(1, 11)))
    wait_until(lambda: len(probe_effects()) >= 120, seconds=30)
    amqp_publish(consumer_vhost, events_for(range(11, 21)))
    wait_until(
        lambda: len({pid for *_, pid in probe_effects()}) == 2, seconds=30, what="both processes active"
    )
    assert first.log_events("consumer.partitions_released"), "the first process handed partitions over"

    first.process.signal(signal.SIGKILL)  # its partitions fail over to the second, mid-stream
    amqp_publish(consumer_vhost, events_for(range(21, 31)))
    wait_until(lambda: len(probe_effects()) == len(AGGREGATES) * 30, seconds=60)

    sequences: dict[str, list[int]] = defaultdict(list)
    pids: dict[str, set[int]] = defaultdict(set)
    for aggregate, seq, _, pid in probe_effects():
        sequences[aggregate].append(seq)
        pids[aggregate].add(pid)
    assert all(sequences[a] == list(range(1, 31)) for a in AGGREGATES), {
        a: s for a, s in sequences.items() if s != list(range(1, 31))
    }
    assert second.process.pid in {pid for p in pids.values() for pid in p}
    assert any(len(p) == 2 for p in pids.values()), "some aggregates moved between processes"
