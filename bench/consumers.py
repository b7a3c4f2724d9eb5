"""Throughput of the event consumers: events/s one `manage.py consume` process drains from
RabbitMQ into PostgreSQL (inbox claim + one INSERT effect per event: bench/consumer_probe.py).

Compared in the same run: the baseline of one transaction per event (CONSUMER_BATCH_SIZE=1)
against the default batch, and two competing processes with the default batch. Each case is run
three times on a backlog of events published before the consumer starts; the medians are quoted.

Runs with no arguments on databases of its own (`<DB_NAME_PREFIX>bench_consumers_*`, created
empty at the start and dropped at the end, so it runs after any other benchmark) and its own
RabbitMQ vhost, stops what it started, and ends with ONE line of JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from harness.django_bootstrap import bench_django_start  # noqa: E402

os.environ["CONSUMER_MODULES"] = "legacy.crm.consumers,bench.consumer_probe"
BENCH_PREFIX = bench_django_start("consumers")

import amqp  # noqa: E402
import kombu  # noqa: E402
from django.conf import settings  # noqa: E402

from bench.consumer_probe import EVENT_TYPE, effect_table_reset, effects_count, probe  # noqa: E402
from cdc.cloudevents import cloud_event  # noqa: E402
from harness.consumer_topology import group_topology_declare  # noqa: E402
from harness.own_databases import own_databases  # noqa: E402
from harness.rabbitmq_vhost import rabbitmq_vhost, vhost_name  # noqa: E402
from harness.waiting import wait_until  # noqa: E402
from legacy.crm.models import CrmInboxEntry  # noqa: E402
from ops.process_group import ManagedProcess, ProcessGroup, database_env, manage_command  # noqa: E402

EVENTS = 4000
AGGREGATES = 200
ROUNDS = 3
GROUP = probe.name
LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"


def backlog_publish(url: str, count: int) -> None:
    """Publishes `count` contract events at once (confirms awaited at the end) and waits until
    the partition queues hold them all."""
    topology = group_topology_declare(url, GROUP)
    with kombu.Connection(url) as connection:
        channel = connection.channel()
        channel.confirm_select()
        for n in range(count):
            aggregate = f"order:{n % AGGREGATES}"
            event = cloud_event(
                event_id=str(uuid.uuid4()),
                event_type=EVENT_TYPE,
                source="/bench",
                subject=aggregate,
                time="2026-01-01T00:00:00.000000Z",
                data={"aggregate": aggregate, "seq": n},
            )
            channel.basic_publish(
                amqp.Message(
                    json.dumps(event).encode(),
                    delivery_mode=2,
                    content_type="application/cloudevents+json",
                    message_id=event["id"],
                    application_headers={"aggregate_id": aggregate},
                ),
                exchange=settings.CDC_EXCHANGE,
                routing_key=event["type"],
            )
        wait_until(
            lambda: (
                sum(
                    channel.queue_declare(queue=q, passive=True).message_count
                    for q in topology.partition_queues
                )
                == count
            ),
            seconds=60,
            what=f"the backlog of {count} events in the queues",
        )


def one_round(url: str, *, batch_size: int, processes: int, tag: str) -> float:
    """Events/s from the first effect to the last, for a fresh backlog."""
    effect_table_reset()
    CrmInboxEntry.objects.filter(consumer=GROUP).delete()
    backlog_publish(url, EVENTS)
    env = {
        **database_env(settings.DATABASES),
        "AMQP_URL": url,
        "CDC_AMQP_URL": url,
        "SERVICE": "legacy",
        "CONSUMER_MODULES": os.environ["CONSUMER_MODULES"],
        "CONSUMER_BATCH_SIZE": str(batch_size),
        "CONSUMER_REBALANCE_SECONDS": "0.5",
        "LOG_LEVEL": "WARNING",
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with ProcessGroup() as group:
        for n in range(processes):
            group.start(
                ManagedProcess(
                    f"consume-{n}",
                    manage_command("consume", GROUP),
                    env,
                    LOG_DIR / f"consumers-{tag}-{n}.log",
                )
            )
        first = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = effects_count()
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            if done >= EVENTS:
                assert first is not None
                return (EVENTS - first[1]) / (now - first[0])
            time.sleep(0.02)
    raise RuntimeError(f"{tag}: the consumers did not drain {EVENTS} events within 120 s")


def main() -> None:
    with own_databases(BENCH_PREFIX), rabbitmq_vhost(vhost_name("bench-consumers")) as url:
        rates = measure(url)
    medians = {name: round(statistics.median(values)) for name, values in rates.items()}
    print(
        json.dumps(
            {
                "bench": "consumers",
                "events_per_round": EVENTS,
                "rounds": ROUNDS,
                "batch_size": settings.CONSUMER_BATCH_SIZE,
                "median_events_per_s": medians,
                "batched_vs_per_event_transaction": round(
                    medians["batched"] / medians["per_event_transaction"], 2
                ),
            }
        )
    )


def measure(url: str) -> dict[str, list[float]]:
    cases = {
        "per_event_transaction": {"batch_size": 1, "processes": 1},
        "batched": {"batch_size": settings.CONSUMER_BATCH_SIZE, "processes": 1},
        "batched_two_processes": {"batch_size": settings.CONSUMER_BATCH_SIZE, "processes": 2},
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    for round_number in range(ROUNDS):
        for name, case in cases.items():  # interleaved, so a noisy neighbour hits every case
            rate = one_round(url, tag=f"{name}-{round_number}", **case)
            rates[name].append(rate)
            print(f"round {round_number + 1}/{ROUNDS} {name}: {rate:,.0f} events/s", flush=True)
    return rates


if __name__ == "__main__":
    main()
