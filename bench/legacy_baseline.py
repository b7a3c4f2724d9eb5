"""Baselines of the legacy monolith that the proxy and the event-driven flow are compared against.

(a) Throughput and latency of the customer routes, driven directly at the legacy web process
    (granian WSGI, 2 workers) with wrk (installed with apt when missing; the project's own traffic
    generator in closed-loop mode when wrk cannot be had): requests/s, p50 and p99 per route,
    the median of several rounds.
(b) Order-to-production latency under the polling orchestrator at its default poll interval:
    from the staff confirm call returning until the MES has created the production order, over
    orders confirmed one at a time at an irregular pace (so confirms do not lock to the poll).

Runs with no arguments in a few minutes on databases of its own (`<DB_NAME_PREFIX>bench_baseline_*`,
created empty and seeded at the start, dropped at the end, so it runs after any other benchmark)
and its own RabbitMQ vhost, stops every process it started, and ends with ONE line of JSON.
BENCH_LOAD_TOOL=generator drives (a) with the traffic generator even when wrk is there.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from harness.django_bootstrap import bench_django_start  # noqa: E402

BENCH_PREFIX = bench_django_start("baseline")

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from harness.own_databases import own_databases  # noqa: E402
from harness.percentiles import percentile  # noqa: E402
from harness.process_cpu import process_group_cpu_seconds  # noqa: E402
from harness.rabbitmq_vhost import rabbitmq_vhost, vhost_name  # noqa: E402
from harness.system_tools import ToolMissing, tool_ensure  # noqa: E402
from harness.waiting import wait_http_ok, wait_until  # noqa: E402
from legacy.mes.models import ProductionOrder  # noqa: E402
from legacy.processes import legacy_process_commands  # noqa: E402
from legacy.shop.models import Customer, Order, OrderStatus, Product  # noqa: E402
from legacy.traffic.credentials import traffic_data_load, traffic_staff_token_ensure  # noqa: E402
from legacy.traffic.runner import TrafficRunner  # noqa: E402
from legacy.traffic.scenarios import PlannedRequest, Scenario, TrafficData  # noqa: E402
from ops.process_group import ManagedProcess, ProcessGroup, database_env, free_port  # noqa: E402

SEED = {"products": 40, "customers": 2_000, "orders": 50_000}
WEB_WORKERS = 2
CONNECTIONS = 16
ROUNDS = 5
ROUND_SECONDS = 3
WARMUP_SECONDS = 1
LATENCY_ORDERS = 40
LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"
ROUTES = (
    "GET /shop/api/products/",
    "GET /shop/api/products/{sku}/",
    "GET /shop/api/orders/",
    "GET /shop/api/orders/{id}/",
    "POST /shop/api/orders/",
)


def say(text: str) -> None:
    print(text, flush=True)


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so every `finally` and context manager stops what it started


# set-up ----------------------------------------------------------------------------------------
def data_seed() -> dict[str, int]:
    """The data set every run measures on, seeded into the run's fresh databases."""
    say(f"seeding {SEED['orders']} orders, {SEED['customers']} customers, {SEED['products']} products")
    started = time.perf_counter()
    call_command("seed", stdout=open(os.devnull, "w"), **SEED)
    say(f"seeded in {time.perf_counter() - started:.1f} s")
    return {
        "products": Product.objects.count(),
        "customers": Customer.objects.count(),
        "orders": Order.objects.count(),
    }


def stack_start(group: ProcessGroup, amqp_url: str) -> tuple[str, int]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **database_env(settings.DATABASES),
        "AMQP_URL": amqp_url,
        "SERVICE": "legacy",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    processes = {
        name: group.start(ManagedProcess(name, command, env, LOG_DIR / f"baseline-{name}.log"))
        for name, command in legacy_process_commands(port=port, web_workers=WEB_WORKERS).items()
    }
    base_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base_url}/healthz", seconds=30, process=processes["web"].popen)
    return base_url, processes["web"].pid


def orchestration_quiet(timeout: float = 90.0) -> None:
    """Waits until the orchestrator has sent every confirmed order (seeded ones included) and the
    MES has stopped moving stages, so the measurements start on an idle system."""

    def quiet() -> bool:
        recent = timezone.now() - timedelta(seconds=3)
        return not (
            Order.objects.filter(status=OrderStatus.CONFIRMED).exists()
            or ProductionOrder.objects.filter(updated_at__gt=recent).exists()
        )

    wait_until(quiet, seconds=timeout, interval=0.5, what="the orchestrator drained the confirmed orders")


# (a) customer routes ---------------------------------------------------------------------------
def wrk_available() -> str | None:
    if os.environ.get("BENCH_LOAD_TOOL") == "generator":  # to compare, or where apt is not allowed
        return None
    try:
        return tool_ensure("wrk", package="wrk", say=say)
    except ToolMissing as exc:
        say(f"{exc}; using the traffic generator in closed-loop mode")
        return None


def lua_list(values: list[str]) -> str:
    return "{" + ",".join(json.dumps(value) for value in values) + "}"


WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk_scripts(data: TrafficData, scenario: Scenario) -> dict[str, str]:
    """A wrk Lua script per route; each request picks a product, customer or order at random."""
    skus = [product.sku for product in data.products]
    pairs = data.customer_orders[:1000]
    bodies = [scenario.order_place().body.decode() for _ in range(300)]  # type: ignore[union-attr]
    common = (
        f"local skus = {lua_list(skus)}\n"
        f"local tokens = {lua_list(data.customer_tokens[:500])}\n"
        f"local owners = {lua_list([token for token, _ in pairs])}\n"
        f"local orders = {lua_list([public_id for _, public_id in pairs])}\n"
        f"local bodies = {lua_list(bodies)}\n"
        "local function pick(list) return list[math.random(#list)] end\n"
        "local function bearer(token) return {['Authorization'] = 'Bearer ' .. token} end\n"
    )
    requests = {
        "GET /shop/api/products/": 'return wrk.format("GET", "/shop/api/products/")',
        "GET /shop/api/products/{sku}/": (
            'return wrk.format("GET", "/shop/api/products/" .. pick(skus) .. "/")'
        ),
        "GET /shop/api/orders/": 'return wrk.format("GET", "/shop/api/orders/", bearer(pick(tokens)))',
        "GET /shop/api/orders/{id}/": (
            "local i = math.random(#orders)\n"
            '  return wrk.format("GET", "/shop/api/orders/" .. orders[i] .. "/", bearer(owners[i]))'
        ),
        "POST /shop/api/orders/": (
            "local headers = bearer(pick(tokens))\n"
            "  headers['Content-Type'] = 'application/json'\n"
            '  return wrk.format("POST", "/shop/api/orders/", headers, pick(bodies))'
        ),
    }
    return {
        route: f"{common}request = function()\n  {body}\nend\n{WRK_DONE}" for route, body in requests.items()
    }


def wrk_round(wrk: str, script: Path, base_url: str, seconds: int) -> dict[str, float]:
    result = subprocess.run(
        [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), base_url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRKJSON "))
    figures = json.loads(line.removeprefix("WRKJSON "))
    return {
        "requests": figures["requests"],
        "rps": figures["requests"] / (figures["duration_us"] / 1e6),
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "errors": figures["status_errors"] + figures["socket_errors"],
    }


def generator_round(route: str, scenario: Scenario, base_url: str, seconds: int) -> dict[str, float]:
    actions = {
        "GET /shop/api/products/": scenario.product_list,
        "GET /shop/api/products/{sku}/": scenario.product_show,
        "GET /shop/api/orders/": scenario.order_list,
        "GET /shop/api/orders/{id}/": scenario.order_show,
        "POST /shop/api/orders/": scenario.order_place,
    }
    runner = TrafficRunner(base_url=base_url, next_request=actions[route], concurrency=CONNECTIONS)
    summary = asyncio.run(runner.closed_loop(users=CONNECTIONS, duration=seconds))
    figures = summary.routes[route].figures()
    return {
        "requests": summary.requests,
        "rps": summary.achieved_rate,
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "errors": figures["errors"],
    }


def customer_routes(base_url: str, data: TrafficData, web_pgid: int) -> tuple[str, dict[str, dict[str, Any]]]:
    scenario = Scenario(data=data, mix={"customer": 1.0}, rng=random.Random(11))
    wrk = wrk_available()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="legacy-baseline-") as workdir:
        scripts = {}
        for index, (route, text) in enumerate(wrk_scripts(data, scenario).items()):
            scripts[route] = Path(workdir) / f"route{index}.lua"
            scripts[route].write_text(text)

        def one_round(route: str, seconds: int) -> dict[str, float]:
            cpu_before = process_group_cpu_seconds(web_pgid)
            if wrk:
                figures = wrk_round(wrk, scripts[route], base_url, seconds)
            else:
                figures = generator_round(route, scenario, base_url, seconds)
            # CPU per request of the web process: unlike req/s it holds when the cores are shared.
            figures["cpu_ms"] = (
                (process_group_cpu_seconds(web_pgid) - cpu_before) * 1000 / max(figures["requests"], 1)
            )
            return figures

        for route in ROUTES:
            one_round(route, WARMUP_SECONDS)
            rounds = [one_round(route, ROUND_SECONDS) for _ in range(ROUNDS)]
            results[route] = {
                "rps": round(statistics.median(r["rps"] for r in rounds), 1),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in rounds), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in rounds), 2),
                "web_cpu_ms_per_request": round(statistics.median(r["cpu_ms"] for r in rounds), 2),
                "errors": int(sum(r["errors"] for r in rounds)),
                "rounds_rps": [round(r["rps"], 1) for r in rounds],
            }
            row = results[route]
            say(
                f"{route:32} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:7.2f} ms"
                f"  p99 {row['p99_ms']:7.2f} ms  web CPU {row['web_cpu_ms_per_request']:6.2f} ms/request"
                f"  errors {row['errors']}"
            )
    return ("wrk" if wrk else "traffic-generator-closed-loop"), results


# (b) order to production -----------------------------------------------------------------------
def http_json(method: str, url: str, headers: dict[str, str], body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={**headers, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def order_to_production(base_url: str, data: TrafficData) -> dict[str, Any]:
    rng = random.Random(5)
    scenario = Scenario(data=data, mix={"customer": 1.0}, rng=rng)
    staff = {"Authorization": f"Token {traffic_staff_token_ensure()}"}
    placed = []
    for _ in range(LATENCY_ORDERS):
        planned: PlannedRequest = scenario.order_place()
        order = http_json("POST", base_url + planned.path, planned.headers, json.loads(planned.body or b"{}"))
        placed.append(Order.objects.values_list("id", flat=True).get(public_id=order["id"]))
    confirmed_at: dict[int, float] = {}
    for order_id in placed:
        # An irregular pace, so confirms land at every phase of the poll interval.
        time.sleep(rng.uniform(0.6, 1.6))
        http_json("POST", f"{base_url}/crm/api/orders/{order_id}/confirm/", staff)
        confirmed_at[order_id] = time.time()
    wait_until(
        lambda: ProductionOrder.objects.filter(order_id__in=placed).count() == len(placed),
        seconds=settings.CRM_POLL_INTERVAL_SECONDS * 3 + 30,
        interval=0.2,
        what="the MES received every confirmed order",
    )
    latencies = sorted(
        created.timestamp() - confirmed_at[order_id]
        for order_id, created in ProductionOrder.objects.filter(order_id__in=placed).values_list(
            "order_id", "created_at"
        )
    )
    return {
        "orders": len(latencies),
        "poll_interval_s": settings.CRM_POLL_INTERVAL_SECONDS,
        "median_s": round(statistics.median(latencies), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "min_s": round(latencies[0], 3),
        "max_s": round(latencies[-1], 3),
    }


def main() -> int:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    say(f"legacy baseline on fresh databases prefixed {BENCH_PREFIX!r} (dropped at the end)")
    with (
        own_databases(BENCH_PREFIX),
        rabbitmq_vhost(vhost_name("bench-baseline")) as amqp_url,
        ProcessGroup() as group,
    ):
        data_size = data_seed()
        base_url, web_pgid = stack_start(group, amqp_url)
        say(f"legacy stack up at {base_url} (web workers: {WEB_WORKERS}); waiting for the orchestrator")
        orchestration_quiet()
        data = traffic_data_load(staff_token="", api_keys=[])
        tool, routes = customer_routes(base_url, data, web_pgid)
        orchestration_quiet()
        interval = settings.CRM_POLL_INTERVAL_SECONDS
        say(f"confirming {LATENCY_ORDERS} orders one at a time (poll interval {interval} s)")
        latency = order_to_production(base_url, data)
        say(
            f"order to production: median {latency['median_s']} s, p99 {latency['p99_s']} s "
            f"(min {latency['min_s']}, max {latency['max_s']}, n={latency['orders']})"
        )
    print(
        json.dumps(
            {
                "bench": "legacy_baseline",
                "tool": tool,
                "web_workers": WEB_WORKERS,
                "connections": CONNECTIONS,
                "rounds": ROUNDS,
                "round_seconds": ROUND_SECONDS,
                "data": data_size,
                "routes": routes,
                "order_to_production": latency,
                "loadavg_1m_before": round(load_before, 2),
                "seconds": round(time.perf_counter() - started, 1),
            },
            separators=(",", ":"),
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process the bench started has been stopped", file=sys.stderr)
        sys.exit(130)
