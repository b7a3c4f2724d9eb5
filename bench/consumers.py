"""Throughput of the event consumers: events/s one `manage.py consume` process drains from
RabbitMQ into PostgreSQL (inbox claim + one INSERT effect per event, the tests' probe group).

Compared in the same run: the baseline of one transaction per event (CONSUMER_BATCH_SIZE=1)
against the default batch, and two competing processes with the default batch. Each case is run
three times on a backlog of events published before the consumer starts; the medians are quoted.

Runs with no arguments on its own databases (DB_NAME_PREFIX=bench_ unless set) and its own
RabbitMQ vhost, stops what it started, and ends with ONE line of JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
os.environ.setdefault("DB_NAME_PREFIX", "bench_")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SERVICE", "legacy")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["CONSUMER_MODULES"] = "legacy.crm.consumers,tests.consumer_probe"

import django  # noqa: E402

django.setup()

import amqp  # noqa: E402
import kombu  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from legacy.crm.models import CrmInboxEntry  # noqa: E402
from ops.process_group import ManagedProcess, ProcessGroup, database_env, manage_command  # noqa: E402
from tests.consumer_fixtures import group_topology_declare  # noqa: E402
from tests.consumer_probe import PROBE_TABLE, probe_table_reset  # noqa: E402
from tests.event_transport import cloud_event  # noqa: E402

EVENTS = 4000
AGGREGATES = 200
ROUNDS = 3
GROUP = "test-probe"
LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def backlog_publish(url: str, count: int) -> None:
    """Publishes `count` contract events at once (confirms awaited at the end) and waits until
    the partition queues hold them all."""
    topology = group_topology_declare(url, GROUP)
    with kombu.Connection(url) as connection:
        channel = connection.channel()
        channel.confirm_select()
        for n in range(count):
            aggregate = f"order:{n % AGGREGATES}"
            event = cloud_event("test.probe.recorded.v1", aggregate, {"aggregate": aggregate, "seq": n})
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
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            depth = sum(
                channel.queue_declare(queue=q, passive=True).message_count for q in topology.partition_queues
            )
            if depth == count:
                return
            time.sleep(0.05)
    raise RuntimeError(f"the backlog of {count} events did not reach the queues")


def effects_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {PROBE_TABLE}")
        return int(cursor.fetchone()[0])


def one_round(url: str, *, batch_size: int, processes: int, tag: str) -> float:
    """Events/s from the first effect to the last, for a fresh backlog."""
    probe_table_reset()
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
    with open(os.devnull, "w") as quiet:
        call_command("db_setup", verbosity=0, stdout=quiet)
    vhost = f"bench-{os.environ['DB_NAME_PREFIX']}consumers-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    cases = {
        "per_event_transaction": {"batch_size": 1, "processes": 1},
        "batched": {"batch_size": settings.CONSUMER_BATCH_SIZE, "processes": 1},
        "batched_two_processes": {"batch_size": settings.CONSUMER_BATCH_SIZE, "processes": 2},
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for round_number in range(ROUNDS):
            for name, case in cases.items():  # interleaved, so a noisy neighbour hits every case
                rate = one_round(url, tag=f"{name}-{round_number}", **case)
                rates[name].append(rate)
                print(f"round {round_number + 1}/{ROUNDS} {name}: {rate:,.0f} events/s", flush=True)
    finally:
        rabbitmqctl("delete_vhost", vhost)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {PROBE_TABLE}")
        CrmInboxEntry.objects.filter(consumer=GROUP).delete()
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


if __name__ == "__main__":
    main()
