"""Benchmark of the MES split's pricing: quotes/s and p99 of the monolith's in-process quotes API
(legacy web) against the extracted pricing service (mes_pricing web), each driven directly and
through the strangler proxy, in one run, with the same load tool (wrk, POST of real quote bodies
with an API key), the same key and the same catalogue on both sides.

Both web processes run as SERVICE_PROCESSES says, with 2 workers each. Throughput runs (wrk -c16)
and latency runs (wrk -c1) are interleaved over several rounds, the order rotated per round, and
medians are quoted. Through the proxy, POST /mes/api/quotes/ goes to legacy (no slice claims it) and
POST /pricing/api/v1/quotes/ to mes_pricing (its slice live): same semantics, one proxy.

Order-to-production latency (confirm API returned -> production order exists in mes_production) is
another helper's: when bench/mes_production_latency.py exists, its order_to_production_latency()
is called after the quotes part and its figures are reported under "order_to_production".

Runs with no arguments in about three minutes on databases of its own (`<DB_NAME_PREFIX>bench_mes_*`,
created empty at the start, dropped at the end) and ends with one JSON line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
from harness.django_bootstrap import bench_django_start  # noqa: E402

BENCH_PREFIX = bench_django_start("mes")

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from harness.own_databases import own_databases  # noqa: E402
from harness.proxy_plan import plan_route, plan_slice, plan_text  # noqa: E402
from harness.system_tools import tool_ensure  # noqa: E402
from harness.waiting import wait_http_ok  # noqa: E402
from legacy.mes.services import api_key_issue  # noqa: E402
from legacy.seeding import SeedSize, legacy_data_seed  # noqa: E402
from legacy.shop.models import Product  # noqa: E402
from ops.process_group import (  # noqa: E402
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    manage_command,
    service_process_commands,
)
from strangler import services  # noqa: E402
from strangler.plan import plan_parse  # noqa: E402

ROUNDS = 5
THROUGHPUT_SECONDS = 4
LATENCY_SECONDS = 2
CONNECTIONS = 16
WEB_WORKERS = 2
KEY_NAME = "bench-partner"
# The shop service's kind of rate: high enough never to refuse here, per second so that the
# monolith's DRF throttle keeps a short request history (see MES_API_KEY_RATE_LIMITS).
KEY_RATE = "100000/s"
LEGACY_PATH = "/mes/api/quotes/"
PRICING_PATH = "/pricing/api/v1/quotes/"
LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"
# The pricing database's rules and keys (copied as the migrations toolkit's backfill does) and its
# cost projection (filled as the catalogue's events do), from the legacy database.
RULE_TABLES = ("mes_pricing_rule", "mes_quantity_discount", "mes_api_key")
PROJECTION = (
    ("pricing_material (id, code, unit_cost)", "SELECT id, code, unit_cost FROM shop_material"),
    (
        "pricing_product (id, sku, labour_minutes, active)",
        "SELECT id, sku, labour_minutes, active FROM shop_product",
    ),
    (
        "pricing_product_material (id, product_id, material_id, quantity)",
        "SELECT id, product_id, material_id, quantity FROM shop_product_material",
    ),
    (
        "pricing_product_option (id, product_id, code, extra_material_id, extra_material_quantity, "
        "extra_labour_minutes)",
        "SELECT id, product_id, code, extra_material_id, extra_material_quantity, extra_labour_minutes "
        "FROM shop_product_option",
    ),
)
WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def say(message: str) -> None:
    print(f"[bench mes] {message}", file=sys.stderr, flush=True)


def raw(alias: str) -> psycopg.Connection:
    config = connections[alias].settings_dict
    return psycopg.connect(
        host=config["HOST"],
        port=config["PORT"],
        user=config["USER"],
        password=config.get("PASSWORD") or None,
        dbname=config["NAME"],
        autocommit=True,
    )


def world_seed() -> tuple[str, list[str]]:
    """The legacy catalogue and rules, a partner key, and the same on the pricing database.
    The key, and quote bodies for real products and options."""
    legacy_data_seed(
        size=SeedSize(products=40, customers=1, orders=0, days=1, notes_percent=0), now=timezone.now()
    )
    key = api_key_issue(name=KEY_NAME).raw
    with raw("default") as legacy, raw("pricing") as pricing:
        for table in RULE_TABLES:
            with legacy.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as out:
                with pricing.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as into:
                    for chunk in out:
                        into.write(chunk)
        for target, query in PROJECTION:
            with legacy.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as out:
                with pricing.cursor().copy(f"COPY {target} FROM STDIN (FORMAT binary)") as into:
                    for chunk in out:
                        into.write(chunk)
    rng = random.Random(5)
    products = list(Product.objects.filter(active=True).prefetch_related("options"))
    bodies = []
    for _ in range(300):
        product = rng.choice(products)
        codes = [option.code for option in product.options.all()]
        chosen = rng.sample(codes, k=rng.randint(0, min(2, len(codes))))
        bodies.append(json.dumps({"sku": product.sku, "quantity": rng.randint(1, 60), "options": chosen}))
    return key, bodies


def wrk_script(path: str, key: str, bodies: list[str]) -> str:
    return (
        "local bodies = {" + ",".join(json.dumps(body) for body in bodies) + "}\n"
        f"local headers = {{['X-API-Key'] = {json.dumps(key)}, ['Content-Type'] = 'application/json'}}\n"
        "request = function()\n"
        f'  return wrk.format("POST", {json.dumps(path)}, headers, bodies[math.random(#bodies)])\n'
        f"end\n{WRK_DONE}"
    )


def wrk_run(wrk: str, script: Path, base_url: str, *, connections: int, seconds: int) -> dict[str, float]:
    result = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), base_url],
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


def web_start(group: ProcessGroup, service: str, env: dict[str, str]) -> str:
    port = free_port()
    command = service_process_commands(service, port=port, web_workers=WEB_WORKERS)["web"]
    process = group.start(
        ManagedProcess(
            f"{service}-web", command, {**env, "SERVICE": service}, LOG_DIR / f"mes-{service}-web.log"
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", seconds=30, process=process.popen)
    return url


def proxy_start(group: ProcessGroup, env: dict[str, str], *, legacy_url: str, pricing_url: str) -> str:
    plan = plan_text(
        backends={"legacy": legacy_url, "mes_pricing": pricing_url},
        slices={
            "pricing": plan_slice(
                service="mes_pricing", routes=[plan_route("quotes-v1", PRICING_PATH, methods=["POST"])]
            )
        },
    )
    services.plan_apply(plan=plan_parse(plan), who="bench")
    for _ in ("syncing", "shadow", "canary", "live"):
        services.slice_promote(name="pricing", who="bench", force=True, why="benchmark setup")
    port = free_port()
    process = group.start(
        ManagedProcess(
            "proxy",
            manage_command("strangler", "serve", "--port", str(port)),
            {**env, "SERVICE": "proxy"},
            LOG_DIR / "mes-proxy.log",
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/_strangler/healthz", seconds=30, process=process.popen)
    return url


def measure(wrk: str) -> dict[str, Any]:
    key, bodies = world_seed()
    env = {
        **database_env(settings.DATABASES),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "600",
        "MES_API_KEY_RATE_LIMITS": f"{KEY_NAME}={KEY_RATE}",
    }
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with ProcessGroup() as group, tempfile.TemporaryDirectory(prefix="bench-mes-") as workdir:
        legacy_url = web_start(group, "legacy", env)
        pricing_url = web_start(group, "mes_pricing", env)
        proxy_url = proxy_start(group, env, legacy_url=legacy_url, pricing_url=pricing_url)
        targets = {
            "legacy_direct": (legacy_url, LEGACY_PATH),
            "pricing_direct": (pricing_url, PRICING_PATH),
            "legacy_proxy": (proxy_url, LEGACY_PATH),
            "pricing_proxy": (proxy_url, PRICING_PATH),
        }
        scripts = {}
        for name, (_, path) in targets.items():
            scripts[name] = Path(workdir) / f"{name}.lua"
            scripts[name].write_text(wrk_script(path, key, bodies))
        # The same body answers the same on both sides before anything is measured.
        first = json.loads(bodies[0])
        answers = {
            name: subprocess.run(
                [
                    "curl",
                    "-s",
                    "-X",
                    "POST",
                    "-H",
                    f"X-API-Key: {key}",
                    "-H",
                    "Content-Type: application/json",
                    "-d",
                    json.dumps(first),
                    base + path,
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout
            for name, (base, path) in targets.items()
        }
        assert len(set(answers.values())) == 1 and '"total"' in answers["legacy_direct"], answers
        for name, (base, _) in targets.items():
            say(f"warming up {name}")
            wrk_run(wrk, scripts[name], base, connections=CONNECTIONS, seconds=2)
        loaded: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        single: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        names = list(targets)
        for round_number in range(ROUNDS):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                base = targets[name][0]
                loaded[name].append(
                    wrk_run(wrk, scripts[name], base, connections=CONNECTIONS, seconds=THROUGHPUT_SECONDS)
                )
                single[name].append(wrk_run(wrk, scripts[name], base, connections=1, seconds=LATENCY_SECONDS))
                say(
                    f"round {round_number + 1} {name}: {loaded[name][-1]['rps']:.0f} quotes/s "
                    f"at c{CONNECTIONS} "
                    f"p99 {loaded[name][-1]['p99_ms']:.1f} ms; c1 p99 {single[name][-1]['p99_ms']:.2f} ms"
                )

    def median(runs: list[dict[str, float]], field: str) -> float:
        return round(statistics.median(run[field] for run in runs), 2)

    figures: dict[str, Any] = {
        "benchmark": "mes",
        "connections": CONNECTIONS,
        "rounds": ROUNDS,
        "web_workers": WEB_WORKERS,
    }
    for name in targets:
        figures[name] = {
            "quotes_per_s": median(loaded[name], "rps"),
            "p50_ms_loaded": median(loaded[name], "p50_ms"),
            "p99_ms_loaded": median(loaded[name], "p99_ms"),
            "p50_ms": median(single[name], "p50_ms"),
            "p99_ms": median(single[name], "p99_ms"),
            "errors": int(sum(run["errors"] for run in loaded[name] + single[name])),
        }
    for way in ("direct", "proxy"):
        pairs = zip(loaded[f"pricing_{way}"], loaded[f"legacy_{way}"], strict=True)
        figures[f"pricing_vs_legacy_{way}_paired_median"] = round(
            statistics.median(p["rps"] / lg["rps"] for p, lg in pairs), 3
        )
    figures["goal_pricing_at_least_legacy_throughput"] = (
        figures["pricing_vs_legacy_direct_paired_median"] >= 1.0
        and figures["pricing_vs_legacy_proxy_paired_median"] >= 1.0
    )
    return figures


def order_to_production() -> dict[str, Any]:
    """The production helper's figures when its bench/mes_production_latency.py exists."""
    if importlib.util.find_spec("bench.mes_production_latency") is None:
        return {"measured": False, "reason": "bench/mes_production_latency.py is not there (yet)"}
    # 20 s of confirms per path (1,000 orders at 50/s) keeps the whole benchmark within five minutes.
    os.environ.setdefault("BENCH_SECONDS", "20")
    from bench.mes_production_latency import order_to_production_latency

    return order_to_production_latency()


def report(figures: dict[str, Any]) -> None:
    print(f"{'':16} {'quotes/s c16':>13} {'p99 c16':>9} {'p50 c1':>8} {'p99 c1':>8} {'errors':>7}")
    for name in ("legacy_direct", "pricing_direct", "legacy_proxy", "pricing_proxy"):
        row = figures[name]
        print(
            f"{name:16} {row['quotes_per_s']:>13.0f} {row['p99_ms_loaded']:>9.2f} {row['p50_ms']:>8.2f} "
            f"{row['p99_ms']:>8.2f} {row['errors']:>7}"
        )
    print(
        f"pricing/legacy throughput (paired per-round medians): direct "
        f"{figures['pricing_vs_legacy_direct_paired_median']}, through the proxy "
        f"{figures['pricing_vs_legacy_proxy_paired_median']}; "
        f"load average {figures['load_average_start_end']}"
    )
    print(json.dumps(figures))


def main() -> None:
    started = time.monotonic()
    load_at_start = round(os.getloadavg()[0], 2)
    wrk = tool_ensure("wrk", package="wrk", say=say)
    say(f"preparing fresh databases {BENCH_PREFIX}* (dropped at the end)")
    with own_databases(BENCH_PREFIX):
        figures = measure(wrk)
        figures["order_to_production"] = order_to_production()
    figures["load_average_start_end"] = [load_at_start, round(os.getloadavg()[0], 2)]
    figures["seconds"] = round(time.monotonic() - started, 1)
    report(figures)


if __name__ == "__main__":
    main()
