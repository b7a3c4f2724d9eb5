"""Order-to-production latency of the MES split against the legacy polling path, in one run.

Latency is from the CRM's confirm call returning to the production order's row being visible
(committed) in the database that holds it, over orders confirmed through the legacy API at a
steady rate (50/s for ~30 s by default):
- split: the monolith's web, the legacy CDC engine (`manage.py cdc run`) publishing shop.order.*
  from the shared database, and mes_production's processes (mes_production/processes.py: the
  `production` consumer, the stage runner, the outbox relay) -> mes_production_order in the
  production database;
- polling (today): the monolith's web, Celery worker and beat (ORCHESTRATION_MODE=polling, the CRM
  poller at its default interval) -> Celery -> the legacy MES -> mes_production_order in legacy.
A thread looks up the confirmed orders' rows every 2 ms (20 ms behind a backlog of 200 or more):
"visible" latencies include that polling; "created_at" ones are from the row's own creation time
(its transaction commits just after). Orders still missing at the deadline are counted apart.

A part of bench/mes.py (run that): `order_to_production_latency()` expects Django set up on fresh,
migrated databases (bench/mes.py's own, dropped at the end) and uses a RabbitMQ vhost and
replication slots of its own. Goal: split p99 < 100 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"
RATE = float(os.environ.get("BENCH_RATE", "50"))  # confirms per second
SECONDS = float(os.environ.get("BENCH_SECONDS", "30"))
CLIENT_THREADS = 16
# The monolith's web serves the confirms: two workers, as bench/legacy_baseline.py runs it.
WEB_WORKERS = 2
POLL_SECONDS = 0.002
GOAL_P99_MS = 100

# Placed orders as the monolith writes them (bench/cdc.py's statement): the order, one line and the
# status history row; CDC announces shop.order.created, shop.order_line.added and shop.order.placed.
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


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _dsn(logical: str) -> str:
    from django.conf import settings

    from config.routers import database_alias

    db = settings.DATABASES[database_alias(logical)]
    password = f" password={db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}{password}"


class RowWatcher(threading.Thread):
    """Notes the wall time at which the mes_production_order row of each expected order becomes
    visible. It looks the expected orders up by order_id (unique, indexed) rather than reading
    rows past the last id seen: rows committed out of id order (two Celery worker processes
    insert them) would be skipped."""

    def __init__(self, logical_database: str) -> None:
        super().__init__(name=f"watch-{logical_database}", daemon=True)
        self.dsn = _dsn(logical_database)
        self.seen: dict[int, float] = {}
        self.created: dict[int, float] = {}
        self.pending: set[int] = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ready = threading.Event()

    def start(self) -> None:
        super().start()
        if not self.ready.wait(30):
            raise RuntimeError(f"{self.name} did not connect")

    def expect(self, order_id: int) -> None:
        """Called before the order is confirmed."""
        with self.lock:
            self.pending.add(order_id)

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as db:
            self.ready.set()
            while not self.stop.is_set():
                with self.lock:
                    pending = list(self.pending)
                rows = (
                    db.execute(
                        "SELECT order_id, extract(epoch FROM created_at) FROM mes_production_order "
                        "WHERE order_id = ANY(%s)",
                        [pending],
                    ).fetchall()
                    if pending
                    else []
                )
                now = time.time()
                with self.lock:
                    for order_id, created in rows:
                        self.seen[order_id] = now
                        self.created[order_id] = float(created)
                        self.pending.discard(order_id)
                # A long backlog (the polling path's) is looked up less often: its latencies are
                # seconds, and a query per 2 ms over thousands of ids would load the database.
                time.sleep(POLL_SECONDS if len(pending) < 200 else 10 * POLL_SECONDS)

    def count(self, order_ids: list[int]) -> int:
        with self.lock:
            return sum(1 for order_id in order_ids if order_id in self.seen)


def orders_place(count: int, ids: dict[str, int]) -> list[int]:
    import psycopg

    with psycopg.connect(_dsn("legacy"), autocommit=True) as db, db.transaction():
        return [row[0] for row in db.execute(ORDER_SQL, {**ids, "n": count}).fetchall()]


def confirm(base_url: str, token: str, order_id: int) -> float:
    request = urllib.request.Request(
        f"{base_url}/crm/api/orders/{order_id}/confirm/",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    return time.time()


def confirm_series(
    base_url: str, token: str, order_ids: list[int], watcher: RowWatcher, wait_seconds: float
) -> dict[str, Any]:
    """Confirms the orders at RATE per second (open loop: a slow answer does not delay the next
    confirm) and returns the latency figures once every production order is visible."""
    returned: dict[int, float] = {}
    started = time.monotonic()

    def one(index: int, order_id: int) -> None:
        delay = started + index / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        watcher.expect(order_id)
        returned[order_id] = confirm(base_url, token, order_id)

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        for future in [pool.submit(one, n, order_id) for n, order_id in enumerate(order_ids)]:
            future.result()
    confirm_seconds = time.monotonic() - started
    deadline = time.monotonic() + wait_seconds
    while watcher.count(order_ids) < len(order_ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    with watcher.lock:
        produced = [o for o in order_ids if o in watcher.seen]
        visible = [watcher.seen[o] - returned[o] for o in produced]
        created = [watcher.created[o] - returned[o] for o in produced]
    result = figures(visible, created)
    # An order still missing at the deadline is slower than any produced one: the percentiles
    # above are of the produced orders only, and `complete` says whether that is all of them.
    return {
        "orders": len(order_ids),
        "produced": len(produced),
        "complete": len(produced) == len(order_ids),
        "waited_after_last_confirm_s": wait_seconds,
        "confirms_per_s": round(len(order_ids) / confirm_seconds, 1),
        **result,
    }


def figures(visible: list[float], created: list[float]) -> dict[str, Any]:
    from harness.percentiles import percentile

    def ms(value: float) -> float:
        return round(value * 1000, 1)

    if not visible:
        return {}
    return {
        "p50_ms": ms(statistics.median(visible)),
        "p90_ms": ms(percentile(visible, 0.90)),
        "p99_ms": ms(percentile(visible, 0.99)),
        "max_ms": ms(max(visible)),
        "over_100ms": sum(1 for v in visible if v > 0.1),
        "created_at_p50_ms": ms(statistics.median(created)),
        "created_at_p99_ms": ms(percentile(created, 0.99)),
    }


@contextmanager
def processes() -> Iterator[Any]:
    from ops.process_group import ProcessGroup

    with ProcessGroup() as group:
        yield group


def start(group: Any, name: str, command: list[str], env: dict[str, str]) -> Any:
    from ops.process_group import ManagedProcess

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return group.start(ManagedProcess(name, command, env, LOG_DIR / f"mes-production-latency-{name}.log"))


def order_to_production_latency() -> dict[str, Any]:
    """Both series (split, then polling) on this process's databases; see the module docstring."""
    from django.conf import settings
    from django.utils import timezone

    import mes_production.consumers  # noqa: F401 (registers the group whose queues are declared)
    from cdc.captures import capture_engine_config, capture_load, outbox_engine_config
    from harness.consumer_topology import group_topology_declare
    from harness.engine_slot import engine_on_slot, engine_slot, engine_slot_env
    from harness.rabbitmq_vhost import rabbitmq_vhost, vhost_name
    from harness.waiting import wait_http_ok, wait_until
    from legacy.processes import legacy_process_commands
    from legacy.shop.models import Customer, Order, Product
    from legacy.traffic.credentials import traffic_staff_token_ensure
    from mes_production.models import ShopOrder
    from mes_production.processes import (
        CONSUMER_GROUP,
        OUTBOX_DATABASE,
        OUTBOX_TABLE,
        mes_production_process_commands,
    )
    from ops.process_group import database_env, free_port, manage_command

    orders = int(RATE * SECONDS)
    customer = Customer.objects.create(email="bench-o2p@example.com", name="Bench")
    product = Product.objects.create(sku="BENCH-O2P", name="Bench product", labour_minutes=1)
    ids = {"customer": customer.id, "product": product.id}
    token = traffic_staff_token_ensure()
    prefix = settings.DB_NAME_PREFIX
    legacy_capture = engine_on_slot(
        capture_engine_config(capture_load(settings.CDC_DEFAULT_CAPTURE)), slot=f"{prefix}o2p"
    )
    # The default outbox slot name (<prefix>cdc_outbox_production_production_outbox) passes
    # PostgreSQL's 63 characters with this benchmark's prefix: a shorter one, given to the relay.
    outbox = engine_on_slot(
        outbox_engine_config(database=OUTBOX_DATABASE, table=OUTBOX_TABLE), slot=f"{prefix}obx"
    )
    result: dict[str, Any] = {
        "rate_per_s": RATE,
        "seconds": SECONDS,
        "load_average_at_start": os.getloadavg()[0],
    }

    with (
        rabbitmq_vhost(vhost_name("bench-mes-production-latency")) as amqp_url,
        engine_slot(legacy_capture),
        engine_slot(outbox),
        processes() as group,
    ):
        base_env = {
            **database_env(settings.DATABASES),
            "AMQP_URL": amqp_url,
            "CDC_AMQP_URL": amqp_url,
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
        # Both paths run their stages at the default MES_STAGE_SECONDS while orders come in.
        legacy_env = {**base_env, "SERVICE": "legacy", "ORCHESTRATION_MODE": "events"}
        port = free_port()
        legacy = legacy_process_commands(port=port, web_workers=WEB_WORKERS)
        base_url = f"http://127.0.0.1:{port}"
        web = start(group, "legacy-web", legacy["web"], legacy_env)
        wait_http_ok(f"{base_url}/healthz", seconds=60, process=web.popen)

        # The split. The group's queues exist before any order is written, so none is missed.
        group_topology_declare(amqp_url, CONSUMER_GROUP)
        split_orders = orders_place(orders + 1, ids)
        production_env = {
            **base_env,
            "SERVICE": "mes_production",
            "CDC_OUTBOX_SLOT_NAME": outbox.target.slot_name,
            "CDC_OUTBOX_PUBLICATION_NAME": outbox.target.publication_name,
        }
        cdc_env = {**base_env, "SERVICE": "cdc", **engine_slot_env(legacy_capture)}
        with processes() as split:
            began = time.monotonic()
            start(split, "cdc", manage_command("cdc", "run", "--no-setup"), cdc_env)
            commands = mes_production_process_commands(port=free_port())
            for name in ("consumer", "stages", "outbox"):
                start(split, f"production-{name}", commands[name], production_env)
            wait_until(
                lambda: ShopOrder.objects.filter(order_id__in=split_orders).count() == len(split_orders),
                seconds=180,
                interval=0.2,
                what="the production consumer's projection of the placed orders",
            )
            watcher = RowWatcher("production")
            watcher.start()
            # Warm: one order the whole way (JVM, slot, consumer, web connections).
            if not confirm_series(base_url, token, split_orders[:1], watcher, 60)["complete"]:
                raise RuntimeError("the split did not produce its warm-up order within 60 s")
            say(f"split up in {time.monotonic() - began:.1f} s; confirming {orders} orders at {RATE}/s")
            result["split"] = confirm_series(base_url, token, split_orders[1:], watcher, 60)
            watcher.stop.set()
            say(f"split: {result['split']}")
        # The CRM never sent the split's orders (no poller ran): mark them, or the poller would now.
        Order.objects.filter(id__in=split_orders).update(sent_to_mes_at=timezone.now())

        polling_orders = orders_place(orders, ids)
        polling_env = {**legacy_env, "ORCHESTRATION_MODE": "polling"}
        with processes() as polling:
            start(polling, "legacy-worker", legacy["worker"], polling_env)
            start(polling, "legacy-beat", legacy["beat"], polling_env)
            time.sleep(2)
            watcher = RowWatcher("legacy")
            watcher.start()
            say(
                f"polling: confirming {orders} orders at {RATE}/s, "
                f"poll every {settings.CRM_POLL_INTERVAL_SECONDS} s"
            )
            result["polling"] = {
                **confirm_series(
                    base_url, token, polling_orders, watcher, 3 * settings.CRM_POLL_INTERVAL_SECONDS + 300
                ),
                "poll_interval_s": settings.CRM_POLL_INTERVAL_SECONDS,
            }
            watcher.stop.set()
            say(f"polling: {result['polling']}")
    split, polling_figures = result["split"], result["polling"]
    if split.get("p99_ms") and polling_figures.get("p99_ms"):
        result["p99_ratio_polling_to_split"] = round(polling_figures["p99_ms"] / split["p99_ms"], 1)
    result["goal_split_p99_under_100ms"] = split["complete"] and split["p99_ms"] < GOAL_P99_MS
    result["load_average_at_end"] = os.getloadavg()[0]
    return result
