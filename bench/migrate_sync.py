"""Benchmark of the data-migration sync: forward lag while the monolith takes orders.

A seeded legacy database; the catalogue and shop-orders slices copied to the shop database the way
the backfill hands over (forward slot first, migrations/backfill.py); `manage.py migrate_data sync
--slice shop-orders` running as a user runs it; `manage.py traffic` (customers: browsing, placing and
reading orders) against a legacy web process (granian, 2 workers). On this shared 2-core machine
the legacy web process answers about 45 requests/s, about 4 orders/s (an order is a tenth of the
customer mix), far from 200 orders/s: so a writer thread adds orders straight in SQL, each one
transaction with the rows an order placement writes (order, 1-3 lines with JSON options, status
history), paced to ORDERS_PER_SECOND. The result quotes both rates. While it runs, the stream's
position row in the target is read every 10 ms: each new row version is one applied batch, its
lag = applied_at - source commit time of the batch's last change.

Databases of its own (`<DB_NAME_PREFIX>bench_migrate_sync_*`, fresh at the start, dropped at the end,
slots included) and a RabbitMQ vhost of its own. Progress on stderr; one JSON line on stdout:
{"sync_lag_p50_s", "sync_lag_p99_s", "orders_per_s", ...}. Goal: p99 < 1 s at 200 orders/s.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.django_bootstrap import bench_django_start

BENCH_PREFIX = bench_django_start("migrate_sync")

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from harness.own_databases import own_databases  # noqa: E402
from harness.percentiles import percentile  # noqa: E402
from harness.rabbitmq_vhost import rabbitmq_vhost, vhost_name  # noqa: E402
from harness.slice_streams import slice_streams_drop  # noqa: E402
from harness.waiting import wait_http_ok, wait_until  # noqa: E402
from legacy.processes import legacy_process_commands  # noqa: E402
from migrations.apply import database_conninfo  # noqa: E402
from migrations.backfill import backfill_slice  # noqa: E402
from migrations.slices import slice_get  # noqa: E402
from migrations.state import POSITION_TABLE, stream_name  # noqa: E402
from ops.process_group import (  # noqa: E402
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    manage_command,
)

LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"
SLICE = "shop-orders"
CATALOGUE_SLICE = "catalogue"  # the order lines' products must exist on the shop side
SEED = {"products": 30, "customers": 300, "orders": 5000, "days": 30}
ORDERS_PER_SECOND = 200
TRAFFIC_RATE = 40  # requests/s of `manage.py traffic`, what the legacy web process keeps up with here
TRAFFIC_SECONDS = 30
# The first seconds of load warm the JVM's JIT and the connections: batches applied then are not
# counted (the writer and the traffic run WARMUP_SECONDS longer).
WARMUP_SECONDS = 15
SAMPLE_SECONDS = 0.01
ORDER_SQL = """
WITH o AS (
    INSERT INTO shop_order (public_id, customer_id, status, total, currency, created_at, updated_at,
                            production_stage)
    VALUES (gen_random_uuid(), %(customer)s, 'placed', 30.00, 'EUR', now(), now(), '')
    RETURNING id
), l AS (
    INSERT INTO shop_order_line (order_id, product_id, quantity, options, unit_price, line_total)
    SELECT o.id, %(product)s, g, '["engraving"]', 10.00, 10.00 * g FROM o, generate_series(1, %(lines)s) g
    RETURNING order_id
)
INSERT INTO shop_order_status_history (order_id, status, note, actor, at)
SELECT id, 'placed', '', 'bench', now() FROM o
"""


def say(text: str) -> None:
    print(f"[bench migrate_sync] {text}", file=sys.stderr, flush=True)


class LagSampler(threading.Thread):
    """Reads the stream's position row; each new version (applied_at) is one applied batch."""

    def __init__(self, conninfo: str, stream: str) -> None:
        super().__init__(name="lag-sampler", daemon=True)
        self.conninfo, self.stream = conninfo, stream
        self.lags: list[tuple[float, float]] = []  # (monotonic time sampled, lag)
        self.stop_event = threading.Event()

    def run(self) -> None:
        seen: datetime | None = None
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.stop_event.wait(SAMPLE_SECONDS):
                row = conn.execute(
                    f"SELECT applied_at, EXTRACT(EPOCH FROM applied_at - source_committed_at)::float8 "
                    f"FROM {POSITION_TABLE} WHERE stream = %s",
                    [self.stream],
                ).fetchone()
                if row is not None and row[0] != seen and row[1] is not None:
                    seen = row[0]
                    self.lags.append((time.monotonic(), max(0.0, row[1])))

    def stop(self, *, since: float) -> list[float]:
        self.stop_event.set()
        self.join(10)
        return [lag for at, lag in self.lags if at >= since]


class OrderWriter(threading.Thread):
    """Places orders in SQL at a fixed pace (open loop: a slow commit does not lower the rate)."""

    def __init__(self, conninfo: str, *, per_second: float, seconds: float, seed: int) -> None:
        super().__init__(name=f"order-writer-{seed}", daemon=True)
        self.seed = seed
        self.conninfo, self.per_second, self.seconds = conninfo, per_second, seconds
        self.placed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                customers = [r[0] for r in conn.execute("SELECT id FROM shop_customer").fetchall()]
                products = [r[0] for r in conn.execute("SELECT id FROM shop_product").fetchall()]
                rng = random.Random(self.seed)
                started = time.monotonic()
                while self.placed < self.per_second * self.seconds:
                    due = started + self.placed / self.per_second
                    time.sleep(max(0.0, due - time.monotonic()))
                    params = {
                        "customer": rng.choice(customers),
                        "product": rng.choice(products),
                        "lines": rng.choice((1, 1, 1, 2, 2, 3)),
                    }
                    with conn.transaction():
                        conn.execute(ORDER_SQL, params)
                    self.placed += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the benchmark
            self.error = exc


def orders_count(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM shop_order").fetchone()
    return int(row[0]) if row else 0


def run(group: ProcessGroup, amqp_url: str) -> dict[str, Any]:
    say(f"seeding {SEED['orders']} orders")
    call_command("seed", stdout=open(os.devnull, "w"), **SEED)
    orders, catalogue = slice_get(SLICE), slice_get(CATALOGUE_SLICE)
    started = time.monotonic()
    backfill_slice(catalogue)
    slice_streams_drop(catalogue)  # nothing writes the catalogue here: no stream to keep
    copied = {t.table: t.rows_copied for t in backfill_slice(orders).tables}
    say(f"copied {sum(copied.values())} rows in {time.monotonic() - started:.1f} s: {copied}")

    env = {
        **database_env(settings.DATABASES),
        "LOG_LEVEL": "WARNING",
        "AMQP_URL": amqp_url,
        "CDC_AMQP_URL": amqp_url,
        "DJANGO_DEBUG": "false",
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    web_command = legacy_process_commands(port=port, web_workers=2)["web"]
    web = group.start(
        ManagedProcess("legacy-web", web_command, {**env, "SERVICE": "legacy"}, LOG_DIR / "web.log")
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base_url}/healthz", seconds=60, process=web.popen)

    sync_command = manage_command("migrate_data", "sync", "--slice", SLICE)
    sync_env = {**env, "SERVICE": "migrations", "LOG_LEVEL": "INFO"}
    sync = group.start(ManagedProcess("sync", sync_command, sync_env, LOG_DIR / "migrate-sync.log"))
    target = database_conninfo(orders.target_alias, application_name="bench")
    source = database_conninfo(orders.source_alias, application_name="bench")
    stream = stream_name(SLICE, "forward")

    def streaming() -> bool:  # the heartbeat writes the position row once the engine streams
        with psycopg.connect(target, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [POSITION_TABLE]).fetchone()
            if not exists or not exists[0]:
                return False
            return (
                conn.execute(f"SELECT 1 FROM {POSITION_TABLE} WHERE stream = %s", [stream]).fetchone()
                is not None
            )

    # The copy's window holds no change, so a first change makes the row appear: write one.
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(
            "UPDATE shop_customer SET company = company WHERE id = (SELECT min(id) FROM shop_customer)"
        )
    wait_until(streaming, seconds=120, interval=0.2, what="the sync streaming", process=sync)
    say("sync streaming; starting traffic")

    sampler = LagSampler(target, stream)
    before = orders_count(source)
    sampler.start()
    traffic_started = time.monotonic()
    traffic = subprocess.Popen(
        manage_command(
            "traffic",
            "--base-url",
            base_url,
            "--rate",
            str(TRAFFIC_RATE),
            "--duration",
            str(WARMUP_SECONDS + TRAFFIC_SECONDS),
            "--mix",
            "customer=1",
            "--json",
        ),
        env={**os.environ, **env, "SERVICE": "legacy"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=PROJECT_ROOT,
    )
    # Two connections: one alone cannot commit 200 transactions/s on this machine when it is busy.
    writers = [
        OrderWriter(
            source, per_second=ORDERS_PER_SECOND / 2, seconds=WARMUP_SECONDS + TRAFFIC_SECONDS, seed=n
        )
        for n in range(2)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    writer_seconds = time.monotonic() - traffic_started
    placed = orders_count(source) - before
    try:
        traffic_out, _ = traffic.communicate(timeout=WARMUP_SECONDS + TRAFFIC_SECONDS + 60)
    except subprocess.TimeoutExpired:
        traffic.kill()
        traffic_out, _ = traffic.communicate()
    for writer in writers:
        if writer.error is not None:
            raise RuntimeError(f"an order writer failed: {writer.error!r}")
    # the rows placed during the run all arrive: wait for the target to hold them
    wait_until(lambda: orders_count(target) >= orders_count(source), seconds=60, what="the target caught up")
    lags = sampler.stop(since=traffic_started + WARMUP_SECONDS)
    lines = [line for line in (traffic_out or "").splitlines() if line.startswith("{")]
    summary = json.loads(lines[-1]) if lines else {}
    http_orders = summary.get("routes", {}).get("POST /shop/api/orders/", {}).get("count", 0)
    return {
        "sync_lag_p50_s": round(percentile(lags, 0.50), 4),
        "sync_lag_p99_s": round(percentile(lags, 0.99), 4),
        "sync_lag_max_s": round(max(lags, default=0.0), 4),
        "orders_per_s": round(placed / writer_seconds, 1),
        "orders_per_s_via_traffic": round(http_orders / max(summary.get("duration_s", 0) or 1, 1), 1),
        "traffic_achieved_requests_per_s": summary.get("achieved_rate"),
        "traffic_errors": summary.get("errors"),
        "batches_sampled": len(lags),
        "rows_copied": sum(copied.values()),
    }


def main() -> None:
    started = time.monotonic()
    say(f"fresh databases {BENCH_PREFIX}* (dropped at the end)")
    with own_databases(BENCH_PREFIX), rabbitmq_vhost(vhost_name("bench-migrate-sync")) as amqp_url:
        with ProcessGroup() as group:
            result = run(group, amqp_url)
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
