"""The Kafka variant of the consumers against Tansu (a Kafka-protocol broker, see docs/measurements.md): it
consumes, commits after the inbox transaction and resumes exactly where it stopped."""

import signal
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from cdc.consuming.kafka import dead_letter_topic, topics_ensure
from harness.tansu import tansu_start
from harness.waiting import wait_until
from ops.process_group import ProcessGroup
from tests.consumer_fixtures import LOG_DIR
from tests.consumer_probe import probe_effects
from tests.event_transport import cloud_event, kafka_produce

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TOPIC = "domain.events"
PARTITIONS = 4


@pytest.fixture
def tansu() -> Iterator[str]:
    """Our own Tansu broker (memory storage) on a free port, for this test only."""
    with ProcessGroup() as group:
        yield tansu_start(group, log_dir=LOG_DIR)


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offset per partition of the topic (partitions with one)."""
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
        return {tp.partition: tp.offset for tp in reader.committed(partitions, timeout=10) if tp.offset >= 0}
    finally:
        reader.close()


def next_offsets(positions: list[tuple[int, int]]) -> dict[int, int]:
    """Where a consumer that has handled every produced message resumes, per partition."""
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def dead_letters(bootstrap: str, group: str, count: int) -> list:  # type: ignore[type-arg]
    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{group}-reader", "auto.offset.reset": "earliest"}
    )
    reader.assign([TopicPartition(dead_letter_topic(group), p, 0) for p in range(PARTITIONS)])
    messages: list = []  # type: ignore[type-arg]
    deadline = time.monotonic() + 20
    while len(messages) < count and time.monotonic() < deadline:
        message = reader.poll(0.5)
        if message is not None and not message.error():
            messages.append(message)
    reader.close()
    return messages


def batch(seqs: range) -> list[dict]:  # type: ignore[type-arg]
    return [
        cloud_event("test.probe.recorded.v1", f"probe:{a}", {"aggregate": a, "seq": seq})
        for seq in seqs
        for a in ("a", "b", "c", "d")
    ]


def test_kafka_consumer_commits_and_resumes_exactly_after_restart(tansu, start_consumer, probe_table) -> None:  # type: ignore[no-untyped-def]
    env = {
        "CDC_KAFKA_BOOTSTRAP_SERVERS": tansu,
        "CDC_KAFKA_TOPIC": TOPIC,
        "CONSUMER_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    topics_ensure(tansu, [TOPIC], partitions=PARTITIONS)
    # Another service's event shares the topic: skipped, not dead-lettered. A message that is not
    # JSON and an unknown version are dead-lettered with their reason.
    other = cloud_event("crm.note.added.v1", "note:1", {"note_id": 1})
    unknown = cloud_event("test.probe.recorded.v7", "probe:a", {"aggregate": "a", "seq": 0})
    produced = kafka_produce(tansu, TOPIC, [*batch(range(1, 6)), other, b"\x00garbage", unknown])

    first = start_consumer("test-probe", tag="kafka-first", transport="kafka", env=env)
    wait_until(lambda: len(probe_effects()) == 20, seconds=60, what="first batch handled")
    wait_until(lambda: first.metric("consumer_events_dead_lettered_total") == 2, seconds=20)
    wait_until(lambda: committed_offsets(tansu, "test-probe") == next_offsets(produced), seconds=20)
    assert first.metric("consumer_events_consumed_total", outcome="not_subscribed") == 1
    first.process.signal(signal.SIGTERM)
    assert first.process.popen is not None
    assert first.process.popen.wait(timeout=30) == 0

    produced += kafka_produce(tansu, TOPIC, batch(range(6, 11)))
    second = start_consumer("test-probe", tag="kafka-second", transport="kafka", env=env)
    wait_until(lambda: len(probe_effects()) == 40, seconds=60, what="second batch handled")
    wait_until(lambda: committed_offsets(tansu, "test-probe") == next_offsets(produced), seconds=20)

    # Resumed exactly after the last commit: nothing of the first batch came back.
    assert second.metric("consumer_events_consumed_total", outcome="handled") == 20
    assert second.metric("consumer_events_consumed_total", outcome="duplicate") == 0
    assert second.metric("consumer_events_dead_lettered_total") == 0
    effects = probe_effects()
    for aggregate in "abcd":
        assert [s for a, s, _, _ in effects if a == aggregate] == list(range(1, 11))
    reasons = sorted(
        dict(m.headers())["x-death-reason"].decode() for m in dead_letters(tansu, "test-probe", 2)
    )
    assert reasons == ["not_json", "unknown_type"]
