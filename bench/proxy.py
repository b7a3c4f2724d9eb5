"""Benchmark of the strangler proxy against the real legacy monolith: (a) direct, (b) through our proxy,
(c) through nginx configured with `strangler export-nginx`, with the same load tool (wrk) and the same
backend (granian WSGI, seeded catalogue, GET /shop/api/products/).

Throughput runs (wrk -c16) and latency runs (wrk -c1) are interleaved over three rounds and medians
are quoted; the proxy's CPU time per 1,000 requests comes from /proc (harness.process_cpu). Ends with one JSON
line. Runs on databases of its own (`<DB_NAME_PREFIX>bench_proxy_*`, created empty at the start and
dropped at the end), so no developer data is touched and it runs after any other benchmark.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.django_bootstrap import bench_django_start

BENCH_PREFIX = bench_django_start("proxy")

from decimal import Decimal  # noqa: E402

from django.conf import settings  # noqa: E402

from bench.catalogue_load import seed_catalogue, wrk  # noqa: E402
from harness.own_databases import own_databases  # noqa: E402
from harness.process_cpu import process_group_cpu_seconds  # noqa: E402
from harness.proxy_plan import plan_route, plan_slice, plan_text  # noqa: E402
from harness.system_tools import tool_ensure  # noqa: E402
from harness.waiting import wait_http_ok  # noqa: E402
from legacy.processes import legacy_process_commands  # noqa: E402
from ops.process_group import (  # noqa: E402
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    manage_command,
)
from strangler import selectors, services  # noqa: E402
from strangler.nginx_export import nginx_config_render  # noqa: E402
from strangler.plan import plan_parse  # noqa: E402

# A real catalogue page (DRF list with nested options from PostgreSQL), 10 products per page.
PATH = "/shop/api/products/?limit=10"
# Many short interleaved rounds: the machine is shared, so slow drifts in its load cancel out in
# per-round ratios.
ROUNDS = 18
THROUGHPUT_SECONDS = 2
LATENCY_SECONDS = 2
CONNECTIONS = 16
LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"


def progress(message: str) -> None:
    print(f"[bench proxy] {message}", file=sys.stderr, flush=True)


def bench_plan(legacy_url: str) -> str:
    # The catalogue slice is in canary at 100% with its "new" side on the same legacy process, so each
    # proxied request runs the full decision (route match, cohort hash) and still hits the same backend.
    products = plan_route("products", "/shop/api/products/", methods=["GET", "HEAD"])
    return plan_text(
        backends={"legacy": legacy_url, "shop": legacy_url},
        slices={"catalogue": plan_slice(service="shop", routes=[products])},
    )


def main() -> None:
    started = time.monotonic()
    load_at_start = round(os.getloadavg()[0], 2)
    wrk_bin = tool_ensure("wrk", package="wrk", say=progress)
    nginx_bin = tool_ensure("nginx", package="nginx", say=progress)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    progress(f"preparing fresh databases {BENCH_PREFIX}* (dropped at the end)")
    with own_databases(BENCH_PREFIX):
        figures = measure(wrk_bin, nginx_bin)
    figures["load_average_start_end"] = [load_at_start, round(os.getloadavg()[0], 2)]
    figures["seconds"] = round(time.monotonic() - started, 1)
    report(figures)


def measure(wrk_bin: str, nginx_bin: str) -> dict[str, Any]:
    """Starts the legacy web process, the proxy and nginx, and measures the three in rounds."""
    seed_catalogue()
    env = {
        **database_env(settings.DATABASES),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "600",
    }
    with ProcessGroup() as group, tempfile.TemporaryDirectory(prefix="bench-nginx-") as nginx_dir:
        legacy_port, proxy_port, nginx_port = free_port(), free_port(), free_port()
        web = legacy_process_commands(port=legacy_port, web_workers=2)["web"]
        legacy = group.start(
            ManagedProcess("legacy-web", web, {**env, "SERVICE": "legacy"}, LOG_DIR / "proxy-legacy-web.log")
        )
        legacy_url = f"http://127.0.0.1:{legacy_port}"
        wait_http_ok(f"{legacy_url}/healthz", seconds=30, process=legacy.popen)
        services.plan_apply(plan=plan_parse(bench_plan(legacy_url)), who="bench")
        for _ in range(3):
            services.slice_promote(name="catalogue", who="bench", force=True, why="benchmark setup")
        services.slice_set_weight(name="catalogue", weight=Decimal("100"), who="bench")
        # Shadowing would double the backend's load behind both proxies; this measures routing alone.
        services.slice_set_shadow(name="catalogue", enabled=False, who="bench")
        proxy = group.start(
            ManagedProcess(
                "proxy",
                manage_command("strangler", "serve", "--port", str(proxy_port)),
                {**env, "SERVICE": "proxy"},
                LOG_DIR / "proxy-proxy.log",
            )
        )
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        wait_http_ok(f"{proxy_url}/_strangler/healthz", seconds=30, process=proxy.popen)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (Path(nginx_dir) / "tmp" / sub).mkdir(parents=True)
        config = Path(nginx_dir) / "nginx.conf"
        config.write_text(
            nginx_config_render(snapshot=selectors.routing_snapshot(), listen=f"127.0.0.1:{nginx_port}")
        )
        nginx = group.start(
            ManagedProcess(
                "nginx",
                [nginx_bin, "-p", nginx_dir, "-c", str(config), "-g", "daemon off;"],
                {},
                LOG_DIR / "proxy-nginx.log",
            )
        )
        nginx_url = f"http://127.0.0.1:{nginx_port}"
        targets = {"direct": legacy_url, "proxy": proxy_url, "nginx": nginx_url}
        for name, base in targets.items():
            wait_http_ok(base + PATH, seconds=30)
            progress(f"warming up {name}")
            wrk(wrk_bin, base + PATH, connections=CONNECTIONS, seconds=2)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        latency: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        proxy_cpu = proxy_requests = 0.0
        nginx_cpu = nginx_requests = 0.0
        # The proxy's background loops (routing poll, health checks) cost CPU when idle too: measured
        # while the load goes elsewhere and subtracted from the CPU per request.
        proxy_idle_cpu = proxy_idle_seconds = 0.0
        names = list(targets)
        for round_number in range(1, ROUNDS + 1):
            for name in names[round_number % 3 :] + names[: round_number % 3]:  # rotate the order per round
                base = targets[name]
                proxy_before, nginx_before, at = (
                    process_group_cpu_seconds(proxy.pid),
                    process_group_cpu_seconds(nginx.pid),
                    time.monotonic(),
                )
                result = wrk(wrk_bin, base + PATH, connections=CONNECTIONS, seconds=THROUGHPUT_SECONDS)
                if name == "proxy":
                    proxy_cpu += process_group_cpu_seconds(proxy.pid) - proxy_before
                    proxy_requests += result["requests"]
                else:
                    proxy_idle_cpu += process_group_cpu_seconds(proxy.pid) - proxy_before
                    proxy_idle_seconds += time.monotonic() - at
                if name == "nginx":
                    nginx_cpu += process_group_cpu_seconds(nginx.pid) - nginx_before
                    nginx_requests += result["requests"]
                runs[name].append(result)
                latency[name].append(wrk(wrk_bin, base + PATH, connections=1, seconds=LATENCY_SECONDS))
                progress(
                    f"round {round_number} {name}: {result['rps']:.0f} req/s at c{CONNECTIONS}, "
                    f"p50 {latency[name][-1]['p50_ms']:.2f} ms at c1"
                )

    def median(values: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(v[key] for v in values), 3)

    figures: dict[str, Any] = {
        "benchmark": "proxy",
        "path": PATH,
        "connections": CONNECTIONS,
        "rounds": ROUNDS,
    }
    for name in targets:
        figures[name] = {
            "rps": median(runs[name], "rps"),
            "p50_ms_loaded": median(runs[name], "p50_ms"),
            "p99_ms_loaded": median(runs[name], "p99_ms"),
            "p50_ms": median(latency[name], "p50_ms"),
            "p99_ms": median(latency[name], "p99_ms"),
            "errors": sum(r["non_2xx"] + r["socket_errors"] for r in runs[name] + latency[name]),
        }
    direct, ours, theirs = figures["direct"], figures["proxy"], figures["nginx"]
    assert isinstance(direct, dict) and isinstance(ours, dict) and isinstance(theirs, dict)
    figures["proxy_vs_direct"] = round(ours["rps"] / direct["rps"], 3)
    figures["proxy_vs_nginx"] = round(ours["rps"] / theirs["rps"], 3)
    figures["nginx_vs_direct"] = round(theirs["rps"] / direct["rps"], 3)
    figures["proxy_added_p50_ms"] = round(ours["p50_ms"] - direct["p50_ms"], 3)
    figures["proxy_added_p99_ms"] = round(ours["p99_ms"] - direct["p99_ms"], 3)
    figures["nginx_added_p50_ms"] = round(theirs["p50_ms"] - direct["p50_ms"], 3)
    figures["nginx_added_p99_ms"] = round(theirs["p99_ms"] - direct["p99_ms"], 3)
    figures["proxy_cpu_ms_per_1000_requests"] = (
        round(proxy_cpu / proxy_requests * 1e6, 1) if proxy_requests else None
    )
    figures["nginx_cpu_ms_per_1000_requests"] = (
        round(nginx_cpu / nginx_requests * 1e6, 1) if nginx_requests else None
    )
    idle_rate = proxy_idle_cpu / proxy_idle_seconds if proxy_idle_seconds else 0.0
    figures["proxy_idle_cpu_ms_per_second"] = round(idle_rate * 1000, 2)
    net_cpu = proxy_cpu - idle_rate * THROUGHPUT_SECONDS * ROUNDS
    figures["proxy_cpu_ms_per_1000_requests_net_of_idle"] = (
        round(net_cpu / proxy_requests * 1e6, 1) if proxy_requests else None
    )
    # Each round runs the three targets back to back, so a per-round ratio cancels slow drifts in what
    # else the shared machine is doing; the median of those is the steadier comparison.
    figures["proxy_vs_direct_paired_median"] = round(
        statistics.median(p["rps"] / d["rps"] for p, d in zip(runs["proxy"], runs["direct"], strict=True)), 3
    )
    figures["proxy_vs_nginx_paired_median"] = round(
        statistics.median(p["rps"] / n["rps"] for p, n in zip(runs["proxy"], runs["nginx"], strict=True)), 3
    )
    figures["proxy_added_p50_ms_paired_median"] = round(
        statistics.median(
            p["p50_ms"] - d["p50_ms"] for p, d in zip(latency["proxy"], latency["direct"], strict=True)
        ),
        3,
    )
    figures["proxy_added_p99_ms_paired_median"] = round(
        statistics.median(
            p["p99_ms"] - d["p99_ms"] for p, d in zip(latency["proxy"], latency["direct"], strict=True)
        ),
        3,
    )
    figures["goals_met"] = {
        "throughput_vs_direct_ge_0.85": figures["proxy_vs_direct_paired_median"] >= 0.85,  # type: ignore[operator]
        "throughput_vs_nginx_ge_0.9": figures["proxy_vs_nginx_paired_median"] >= 0.9,  # type: ignore[operator]
        "added_p50_lt_1ms": figures["proxy_added_p50_ms_paired_median"] < 1.0,  # type: ignore[operator]
        "added_p99_lt_5ms": figures["proxy_added_p99_ms_paired_median"] < 5.0,  # type: ignore[operator]
    }
    return figures


def report(figures: dict[str, Any]) -> None:
    targets = ("direct", "proxy", "nginx")
    print(
        f"{'':10} {'req/s c16':>10} {'p50 c16':>9} {'p99 c16':>9} {'p50 c1':>8} {'p99 c1':>8} {'errors':>7}"
    )
    for name in targets:
        row = figures[name]
        assert isinstance(row, dict)
        print(
            f"{name:10} {row['rps']:>10.0f} {row['p50_ms_loaded']:>9.2f} {row['p99_ms_loaded']:>9.2f} "
            f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['errors']:>7}"
        )
    print(
        f"proxy/direct {figures['proxy_vs_direct']}  proxy/nginx {figures['proxy_vs_nginx']}  "
        f"nginx/direct {figures['nginx_vs_direct']}"
    )
    print(
        f"added latency at c1: proxy p50 {figures['proxy_added_p50_ms']} ms "
        f"p99 {figures['proxy_added_p99_ms']} ms; "
        f"nginx p50 {figures['nginx_added_p50_ms']} ms p99 {figures['nginx_added_p99_ms']} ms"
    )
    print(
        f"CPU per 1,000 requests: proxy {figures['proxy_cpu_ms_per_1000_requests']} ms "
        f"({figures['proxy_cpu_ms_per_1000_requests_net_of_idle']} ms net of its idle loops, "
        f"{figures['proxy_idle_cpu_ms_per_second']} ms/s), "
        f"nginx {figures['nginx_cpu_ms_per_1000_requests']} ms"
    )
    print(
        f"paired per-round medians: proxy/direct {figures['proxy_vs_direct_paired_median']} "
        f"proxy/nginx {figures['proxy_vs_nginx_paired_median']}, added p50 "
        f"{figures['proxy_added_p50_ms_paired_median']} ms "
        f"p99 {figures['proxy_added_p99_ms_paired_median']} ms; "
        f"load average {figures['load_average_start_end']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
