"""Benchmark of change data capture: legacy commit -> Debezium -> translation -> broker -> consumer.

(a) sustained events/s from commit to consumer-received, through RabbitMQ with publisher confirms
    and through Kafka (Tansu), for a burst of orders written as fast as PostgreSQL takes them;
(b) commit-to-consumer latency p50/p99 at a steady 200 orders/s (3 events per order);
(c) order-to-production latency (CRM confirm call returned -> MES production order created) in
    ORCHESTRATION_MODE=events (monolith web + worker, this engine, the legacy-orchestration
    consumer) against ORCHESTRATION_MODE=polling at the default poll interval, measured as
    bench/legacy_baseline.py measures polling; both series run here, so the ratio is of one run.
Baselines in the same run: for (a) the same number of events published straight to RabbitMQ with
batch confirms (no database, no Debezium), the ceiling of the transport; for (c) polling.

Runs the engine as `manage.py cdc run` on its own replication slot (dropped at the end) against
databases of its own (`<DB_NAME_PREFIX>bench_cdc_*`, created empty at the start and dropped at the
end, so it runs after any other benchmark), a RabbitMQ vhost of its own and a Tansu broker on a
free port.
Progress goes to stderr; one JSON line at the end on stdout. Goals: >= 3,000 ev/s via RabbitMQ,
p99 < 150 ms at 200 orders/s, order to production in events mode >= 10x faster than polling.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.django_bootstrap import bench_django_start

BENCH_PREFIX = bench_django_start("cdc")

import psycopg  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from django.conf import settings  # noqa: E402
from django.utils import timezone  # noqa: E402
from kombu import Connection, Exchange, Queue  # noqa: E402

from cdc.captures import capture_engine_config, capture_load  # noqa: E402
from cdc.cloudevents import cloud_event, stable_event_id  # noqa: E402
from cdc.engine import EngineConfig  # noqa: E402
from cdc.transports.rabbitmq import RabbitMQPublisher  # noqa: E402
from config.routers import database_alias  # noqa: E402
from harness.engine_slot import engine_on_slot, engine_slot, engine_slot_env  # noqa: E402
from harness.own_databases import own_databases  # noqa: E402
from harness.percentiles import percentile  # noqa: E402
from harness.rabbitmq_vhost import rabbitmq_vhost, vhost_name  # noqa: E402
from harness.tansu import tansu_start  # noqa: E402
from harness.waiting import wait_http_ok, wait_until  # noqa: E402
from legacy.mes.models import ProductionOrder  # noqa: E402
from legacy.processes import legacy_process_commands  # noqa: E402
from legacy.shop.models import Customer, Order, OrderStatus, Product  # noqa: E402
from legacy.traffic.credentials import traffic_staff_token_ensure  # noqa: E402
from ops.process_group import (  # noqa: E402
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    manage_command,
)

LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"
BURST_ORDERS = 10_000  # x3 events
WARMUP_ORDERS = 4_000
BURST_TRANSACTIONS = 30
STEADY_RATE = 200  # orders/s
STEADY_SECONDS = 10
REPEATS = 3  # figures quoted as the median of the repeats
# The consumer's queue: a durable one; its type decides when RabbitMQ confirms a persistent message.
QUEUE_TYPE = os.environ.get("BENCH_QUEUE_TYPE", "quorum")
# (c): orders confirmed one at a time in each mode, at the foundation benchmark's pace.
LATENCY_EVENTS_ORDERS = 20
LATENCY_POLLING_ORDERS = 12
CONFIRM_PAUSE_SECONDS = (0.6, 1.6)

ORDER_SQL = """
WITH o AS (
    INSERT INTO shop_order (public_id, customer_id, status, total, currency, created_at, updated_at,
                            production_stage)
    SELECT gen_random_uuid(), %(customer)s, 'placed', 10.00, 'EUR', now(), now(), ''
    FROM generate_series(1, %(n)s)
    RETURNING id
), l AS (
    INSERT INTO shop_order_line (order_id, product_id, quantity, options, unit_price, line_total)
    SELECT id, %(product)s, 1, '[]', 10.00, 10.00 FROM o
    RETURNING order_id
)
INSERT INTO shop_order_status_history (order_id, status, note, actor, at)
SELECT order_id, 'placed', '', 'bench', now() FROM l
RETURNING order_id
"""


class Received:
    """What the consumer saw: per order id, the wall time of each event's arrival."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def add(self, body: bytes) -> None:
        event = json.loads(body)
        with self.lock:
            self.times.append((int(event["subject"].split(":")[1]), time.time()))

    def count(self) -> int:
        with self.lock:
            return len(self.times)

    def since(self, index: int) -> list[tuple[int, float]]:
        with self.lock:
            return self.times[index:]


def rabbit_consume(url: str, queue: Queue, received: Received) -> None:
    with Connection(url) as connection:
        with connection.Consumer(
            [queue], on_message=lambda m: (received.add(m.body), m.ack()), prefetch_count=2000
        ):
            while not received.stop.is_set():
                try:
                    connection.drain_events(timeout=0.2)
                except TimeoutError:
                    continue


def kafka_consume(bootstrap: str, topic: str, received: Received) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            # Tansu answers a fetch only after the wait: the default 500 ms would be all latency.
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.subscribe([topic])
    while not received.stop.is_set():
        # poll() returns as soon as a message is there; consume(n, timeout) would wait the whole
        # timeout for n messages and add up to that to every latency.
        message = consumer.poll(0.2)
        if message is not None and not message.error():
            received.add(message.value())
    consumer.close()


def database_dsn() -> str:
    db = settings.DATABASES[database_alias("legacy")]
    return f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}" + (
        f" password={db['PASSWORD']}" if db.get("PASSWORD") else ""
    )


def wait_for(predicate: Any, seconds: float, what: str) -> None:
    # Polled every 10 ms: the wait ends a latency or throughput measurement.
    wait_until(predicate, seconds=seconds, interval=0.01, what=what)


def burst(
    db: psycopg.Connection, received: Received, ids: dict[str, int], orders: int = BURST_ORDERS
) -> dict[str, Any]:
    """(a) `orders` orders in BURST_TRANSACTIONS transactions, as fast as they commit."""
    start_index = received.count()
    per_tx = orders // BURST_TRANSACTIONS
    started = time.time()
    for _ in range(BURST_TRANSACTIONS):
        with db.transaction():
            db.execute(ORDER_SQL, {**ids, "n": per_tx}).fetchall()
    written = time.time()
    events = per_tx * BURST_TRANSACTIONS * 3
    wait_for(lambda: received.count() - start_index >= events, 180, "burst events")
    last = max(t for _, t in received.since(start_index))
    return {
        "events": events,
        "write_seconds": round(written - started, 3),
        "events_per_second": round(events / (last - started)),
    }


def steady(db: psycopg.Connection, received: Received, ids: dict[str, int]) -> dict[str, Any]:
    """(b) one order (3 events, one transaction) every 1/STEADY_RATE s; latency of every event."""
    start_index = received.count()
    committed: dict[int, float] = {}
    interval = 1.0 / STEADY_RATE
    next_at = time.monotonic()
    end = next_at + STEADY_SECONDS
    while next_at < end:
        with db.transaction():
            order_id = db.execute(ORDER_SQL, {**ids, "n": 1}).fetchone()[0]
        committed[order_id] = time.time()
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    wait_for(lambda: received.count() - start_index >= 3 * len(committed), 60, "steady events")
    latencies = [
        (at - committed[order_id]) * 1000
        for order_id, at in received.since(start_index)
        if order_id in committed
    ]
    return {
        "orders": len(committed),
        "orders_per_second": round(len(committed) / STEADY_SECONDS, 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
    }


def run_transport(
    transport: str, config: EngineConfig, env: dict[str, str], received: Received, ids: dict[str, int]
) -> dict[str, Any]:
    # A fresh slot each run: old offsets point into another.
    with engine_slot(config), psycopg.connect(database_dsn(), autocommit=True) as db, ProcessGroup() as group:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        command = manage_command("cdc", "run", "--no-setup")
        engine = ManagedProcess(f"cdc-{transport}", command, env, LOG_DIR / f"cdc-{transport}.log")
        started = time.time()
        group.start(engine)
        # Ready when a probe order has come through (JVM start, slot attach, broker connect).
        index = received.count()
        with db.transaction():
            db.execute(ORDER_SQL, {**ids, "n": 1})
        wait_for(lambda: received.count() - index >= 3, 90, f"first event via {transport}")
        first_event_seconds = time.time() - started
        result: dict[str, Any] = {"start_to_first_event_s": round(first_event_seconds, 1)}
        # A first burst lets the JVM compile its hot paths (the C2 compiler took 2 CPU-seconds of
        # the first 18,000 events); a running engine has long done that.
        result["warmup"] = burst(db, received, ids, orders=WARMUP_ORDERS)
        bursts = [burst(db, received, ids) for _ in range(REPEATS)]
        result["burst"] = {
            "events_per_second_median": statistics.median(b["events_per_second"] for b in bursts),
            "runs": bursts,
        }
        steadies = [steady(db, received, ids) for _ in range(REPEATS)]
        result["steady"] = {
            "p50_ms_median": statistics.median(s["p50_ms"] for s in steadies),
            "p99_ms_median": statistics.median(s["p99_ms"] for s in steadies),
            "runs": steadies,
        }
        engine.stop(timeout=30)
    return result


def rabbit_baseline(url: str, events: int) -> dict[str, Any]:
    """The same number of events published straight to RabbitMQ, in batches with confirms, to a
    queue of the same type as the engine's consumer: the ceiling of the transport here."""
    exchange = Exchange("bench.baseline", "topic", durable=True)
    queue = Queue("bench-baseline", exchange, routing_key="#", queue_arguments={"x-queue-type": QUEUE_TYPE})
    with Connection(url) as connection:
        queue(connection.default_channel).declare()
    publisher = RabbitMQPublisher(url=url, exchange=exchange.name)
    batch = [
        cloud_event(
            event_id=stable_event_id("bench", n),
            event_type="shop.order.placed.v1",
            source="/bench",
            subject=f"order:{n + 1}",
            time="2026-01-01T00:00:00.000000Z",
            data={"order_id": n + 1, "at": "2026-01-01T00:00:00Z", "actor": "bench", "note": ""},
        )
        for n in range(settings.CDC_MAX_BATCH_SIZE)
    ]
    started = time.perf_counter()
    sent = 0
    while sent < events:
        publisher.publish_batch(batch)
        sent += len(batch)
    elapsed = time.perf_counter() - started
    publisher.close()
    return {"events": sent, "events_per_second": round(sent / elapsed)}


def say(text: str) -> None:
    print(f"[bench cdc] {text}", file=sys.stderr, flush=True)


def http_post(url: str, headers: dict[str, str]) -> None:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def orders_place(db: psycopg.Connection, ids: dict[str, int], count: int) -> list[int]:
    with db.transaction():
        return [row[0] for row in db.execute(ORDER_SQL, {**ids, "n": count}).fetchall()]


def confirm_series(
    base_url: str, staff: dict[str, str], order_ids: list[int], rng: random.Random, wait_seconds: float
) -> dict[str, list[float]]:
    """Confirms the orders one at a time through the CRM API at the foundation benchmark's irregular
    pace. Returns, per order, seconds from the confirm call returning to the MES production order's
    creation ("returned", as bench/legacy_baseline.py measures polling) and from the call's start
    ("sent": the confirm commits inside the call, so events can beat a slow response)."""
    sent_at: dict[int, float] = {}
    returned_at: dict[int, float] = {}
    for order_id in order_ids:
        time.sleep(rng.uniform(*CONFIRM_PAUSE_SECONDS))  # confirms land at every phase of a poll
        sent_at[order_id] = time.time()
        http_post(f"{base_url}/crm/api/orders/{order_id}/confirm/", staff)
        returned_at[order_id] = time.time()
    produced = ProductionOrder.objects.filter(order_id__in=order_ids)
    wait_for(lambda: produced.count() == len(order_ids), wait_seconds, "every production order")
    created = dict(produced.values_list("order_id", "created_at"))
    return {
        "returned": [created[order_id].timestamp() - returned_at[order_id] for order_id in order_ids],
        "sent": [created[order_id].timestamp() - sent_at[order_id] for order_id in order_ids],
    }


def latency_figures(latencies: dict[str, list[float]]) -> dict[str, Any]:
    returned = latencies["returned"]
    return {
        "orders": len(returned),
        "median_s": round(statistics.median(returned), 3),
        "p99_s": round(percentile(returned, 0.99), 3),
        "min_s": round(min(returned), 3),
        "max_s": round(max(returned), 3),
        "from_call_start_median_s": round(statistics.median(latencies["sent"]), 3),
        "from_call_start_p99_s": round(percentile(latencies["sent"], 0.99), 3),
    }


def orchestration_quiet(seconds: float) -> bool:
    """Whether, within `seconds`, no confirmed order waits for the MES and no stage moved for 3 s
    (the poll drains a confirmed backlog, e.g. the demo's seed, before the series starts)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        recent = timezone.now() - timedelta(seconds=3)
        waiting = Order.objects.filter(status=OrderStatus.CONFIRMED, sent_to_mes_at__isnull=True).exists()
        if not waiting and not ProductionOrder.objects.filter(updated_at__gt=recent).exists():
            return True
        time.sleep(0.5)
    return False


def order_to_production(
    config: EngineConfig, common_env: dict[str, str], ids: dict[str, int]
) -> dict[str, Any]:
    """(c) Order-to-production latency in ORCHESTRATION_MODE=events (the monolith's web and worker,
    this engine and the legacy-orchestration consumer; no scheduler) against polling (web, worker,
    scheduler at the default poll interval), both series in this run on the same databases."""
    with rabbitmq_vhost(vhost_name("bench-cdc-o2p")) as amqp_url, engine_slot(config):
        return order_to_production_series(amqp_url, common_env, ids)


def order_to_production_series(
    amqp_url: str, common_env: dict[str, str], ids: dict[str, int]
) -> dict[str, Any]:
    legacy_env = {
        **database_env(settings.DATABASES),
        "SERVICE": "legacy",
        "LOG_LEVEL": "WARNING",
        "AMQP_URL": amqp_url,
        "CDC_AMQP_URL": amqp_url,
        # Stages after the first do not count here; quick ones leave the polling series a quiet start.
        "MES_STAGE_SECONDS": "0.05",
    }
    staff = {"Authorization": f"Token {traffic_staff_token_ensure()}", "Content-Type": "application/json"}
    rng = random.Random(5)
    port = free_port()
    commands = legacy_process_commands(port=port)
    base_url = f"http://127.0.0.1:{port}"
    poll_interval = settings.CRM_POLL_INTERVAL_SECONDS
    result: dict[str, Any] = {}

    def start(group: ProcessGroup, name: str, command: list[str], env: dict[str, str]) -> ManagedProcess:
        return group.start(ManagedProcess(name, command, env, LOG_DIR / f"o2p-{name}.log"))

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(database_dsn(), autocommit=True) as db, ProcessGroup() as group:
        web = start(group, "web", commands["web"], legacy_env)
        wait_http_ok(f"{base_url}/healthz", seconds=60, process=web.popen)

        events_env = {**legacy_env, "ORCHESTRATION_MODE": "events"}
        with ProcessGroup() as events:
            started = time.time()
            start(events, "events-worker", commands["worker"], events_env)
            start(
                events,
                "events-consumer",
                manage_command("consume", "legacy-orchestration", "--metrics-port", "0"),
                events_env,
            )
            engine_env = {**common_env, "CDC_TRANSPORT": "rabbitmq", "CDC_AMQP_URL": amqp_url}
            start(events, "cdc", manage_command("cdc", "run", "--no-setup"), engine_env)
            # Ready when one order went the whole way (JVM start, slot attach, consumer bound).
            confirm_series(base_url, staff, orders_place(db, ids, 1), random.Random(0), 120)
            say(f"events mode up in {time.time() - started:.1f} s; confirming {LATENCY_EVENTS_ORDERS} orders")
            events_latencies = confirm_series(
                base_url, staff, orders_place(db, ids, LATENCY_EVENTS_ORDERS), rng, 60
            )
        result["events"] = latency_figures(events_latencies)
        say(f"events: {result['events']}")

        polling_env = {**legacy_env, "ORCHESTRATION_MODE": "polling"}
        with ProcessGroup() as polling:
            start(polling, "polling-worker", commands["worker"], polling_env)
            start(polling, "polling-beat", commands["beat"], polling_env)
            quiet = orchestration_quiet(60)
            say(
                f"polling mode up (quiet: {quiet}); confirming {LATENCY_POLLING_ORDERS} orders, "
                f"poll every {poll_interval} s"
            )
            polling_latencies = confirm_series(
                base_url,
                staff,
                orders_place(db, ids, LATENCY_POLLING_ORDERS),
                rng,
                3 * poll_interval + 30,
            )
        result["polling"] = {
            **latency_figures(polling_latencies),
            "poll_interval_s": poll_interval,
            "started_quiet": quiet,
        }
        say(f"polling: {result['polling']}")
    result["median_ratio"] = round(result["polling"]["median_s"] / result["events"]["median_s"], 1)
    result["p99_ratio"] = round(result["polling"]["p99_s"] / result["events"]["p99_s"], 1)
    return result


def main() -> None:
    bench_started = time.monotonic()
    say(f"fresh databases {BENCH_PREFIX}* (dropped at the end)")
    with own_databases(BENCH_PREFIX):
        results = measure()
    results["seconds"] = round(time.monotonic() - bench_started, 1)
    print(json.dumps(results))


def measure() -> dict[str, Any]:
    customer = Customer.objects.create(email="bench-cdc@example.com", name="Bench")
    product = Product.objects.create(sku="BENCH-CDC", name="Bench product", labour_minutes=1)
    ids = {"customer": customer.id, "product": product.id}
    config = engine_on_slot(
        capture_engine_config(capture_load(settings.CDC_DEFAULT_CAPTURE)), slot=f"{BENCH_PREFIX}cdc"
    )
    common_env = {"LOG_LEVEL": "WARNING", "SERVICE": "cdc", **engine_slot_env(config)}
    results: dict[str, Any] = {"bench": "cdc", "load_average_at_start": os.getloadavg()[0]}
    with rabbitmq_vhost(vhost_name("bench-cdc")) as amqp_url:
        received = Received()
        queue = Queue("bench-all", Exchange(settings.CDC_EXCHANGE, "topic", durable=True), routing_key="#")
        with Connection(amqp_url) as connection:
            queue(connection.default_channel).declare()
        consumer = threading.Thread(target=rabbit_consume, args=(amqp_url, queue, received), daemon=True)
        consumer.start()
        env = {**common_env, "CDC_TRANSPORT": "rabbitmq", "CDC_AMQP_URL": amqp_url}
        results["rabbitmq"] = run_transport("rabbitmq", config, env, received, ids)
        received.stop.set()
        results["baseline_rabbitmq_publish_only"] = rabbit_baseline(amqp_url, BURST_ORDERS * 3)
    with ProcessGroup() as brokers:
        bootstrap = tansu_start(brokers, log_dir=LOG_DIR)
        topic = "bench.domain.events"
        _topic_ensure(bootstrap, topic)
        received = Received()
        consumer = threading.Thread(target=kafka_consume, args=(bootstrap, topic, received), daemon=True)
        consumer.start()
        env = {
            **common_env,
            "CDC_TRANSPORT": "kafka",
            "CDC_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CDC_KAFKA_TOPIC": topic,
        }
        results["kafka"] = run_transport("kafka", config, env, received, ids)
        received.stop.set()
    results["order_to_production"] = order_to_production(config, common_env, ids)
    results["load_average_at_end"] = os.getloadavg()[0]
    rabbit = results["rabbitmq"]
    results["goals"] = {
        "rabbitmq_events_per_second_ge_3000": rabbit["burst"]["events_per_second_median"] >= 3000,
        "p99_under_150ms_at_200_orders_per_second": rabbit["steady"]["p99_ms_median"] < 150,
        "order_to_production_events_10x_faster_median": results["order_to_production"]["median_ratio"] >= 10,
    }
    return results


def _topic_ensure(bootstrap: str, topic: str) -> None:
    # The admin client is dropped on return: alive, it would reconnect to the stopped broker
    # every second for the rest of the run, on stderr.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for(lambda: _topic_created(admin, topic), 30, "tansu topic")


def _topic_created(admin: AdminClient, topic: str) -> bool:
    try:
        for future in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
            future.result(timeout=5)
        return True
    except Exception as exc:  # noqa: BLE001 - the broker may not answer yet; retried
        return "already exists" in str(exc).lower()


if __name__ == "__main__":
    main()
