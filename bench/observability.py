"""What tracing costs in throughput: (a) the proxy in front of a light backend and (b) a legacy route
(the catalogue API, GET /shop/api/products/?limit=10, on the legacy web process directly), each with
tracing off (no OTLP endpoint), on at the default sampling (endpoint set, parent-based 1%) and on at
100% (always_on), with the real receiver (`manage.py observability traces receive`) taking the spans.

All six targets run side by side and are measured in interleaved rounds (wrk -c16, the order rotated
per round); each figure is the median, and each ratio the median of per-round ratios. The CPU time
each server's processes spend per request is measured too (from /proc, the exporter's tail
included: a run ends once the server and the receiver are idle again, so a 100% run's export
backlog is charged to it and does not slow the next target); its ratio (off / on) is the throughput
a CPU-bound server keeps. On shared cores both swing by 10-20% between rounds: read the two ratios
together. Goals (judged on both): proxy default/off >= 0.97, legacy route default/off >= 0.95.
Runs with no arguments in under five minutes on databases of its own (`<DB_NAME_PREFIX>bench_observability_*`,
created empty, dropped at the end) and ends with ONE line of JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.django_bootstrap import bench_django_start

BENCH_PREFIX = bench_django_start("observability")

from django.conf import settings  # noqa: E402

from bench.catalogue_load import seed_catalogue, wrk  # noqa: E402
from harness.own_databases import own_databases  # noqa: E402
from harness.process_cpu import process_group_cpu_seconds  # noqa: E402
from harness.proxy_plan import plan_route, plan_slice, plan_text  # noqa: E402
from harness.system_tools import tool_ensure  # noqa: E402
from harness.trace_receiver import trace_receiver_start  # noqa: E402
from harness.waiting import WaitTimeout, wait_http_ok, wait_until  # noqa: E402
from legacy.processes import legacy_process_commands  # noqa: E402
from ops.process_group import (  # noqa: E402
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    manage_command,
    python_command,
)
from strangler import services  # noqa: E402
from strangler.plan import plan_parse  # noqa: E402

PATH = "/shop/api/products/?limit=10"
ROUNDS = 11
SECONDS = 2
ROUNDS_BUDGET_SECONDS = 200  # fewer rounds when the machine is this slow: the run stays under 5 minutes
CONNECTIONS = 16
MODES = ("off", "default", "full")
LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"
GOALS = {"proxy": 0.97, "legacy": 0.95}


def progress(message: str) -> None:
    print(f"[bench observability] {message}", file=sys.stderr, flush=True)


def tracing_env(mode: str, endpoint: str) -> dict[str, str]:
    """off: no endpoint (nothing set up); default: the endpoint and the default sampler; full: 100%."""
    if mode == "off":
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        **({"OTEL_TRACES_SAMPLER": "always_on"} if mode == "full" else {}),
    }


def main() -> None:
    started = time.monotonic()
    load_at_start = round(os.getloadavg()[0], 2)
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]  # each child gets exactly the tracing settings of its mode
    wrk_bin = tool_ensure("wrk", package="wrk", say=progress)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    progress(f"preparing fresh databases {BENCH_PREFIX}* (dropped at the end)")
    with own_databases(BENCH_PREFIX), tempfile.TemporaryDirectory(prefix="bench-traces-") as traces:
        figures = measure(wrk_bin, Path(traces) / "spans.jsonl")
    figures["load_average_start_end"] = [load_at_start, round(os.getloadavg()[0], 2)]
    figures["seconds"] = round(time.monotonic() - started, 1)
    report(figures)


def measure(wrk_bin: str, spans_path: Path) -> dict[str, Any]:
    seed_catalogue()
    env = {
        **database_env(settings.DATABASES),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "600",
    }
    targets: dict[str, str] = {}
    servers: dict[str, ManagedProcess] = {}
    with ProcessGroup() as group:
        receiver = trace_receiver_start(group, spans_path)
        light_port = free_port()
        light = group.start(
            ManagedProcess(
                "light-backend",
                python_command(
                    "-m", "strangler.testing_backend", "--name", "light", "--port", str(light_port)
                ),
                {},
                LOG_DIR / "observability-light.log",
            )
        )
        light_url = f"http://127.0.0.1:{light_port}"
        wait_http_ok(f"{light_url}/healthz", seconds=30, process=light.popen)
        products = plan_route("products", "/shop/api/products/", methods=["GET", "HEAD"])
        plan = plan_text(
            backends={"legacy": light_url, "shop": light_url},
            slices={"catalogue": plan_slice(service="shop", routes=[products])},
        )
        services.plan_apply(plan=plan_parse(plan), who="bench")
        for _ in range(3):  # canary at 100%: every request runs the full routing decision
            services.slice_promote(name="catalogue", who="bench", force=True, why="benchmark setup")
        services.slice_set_weight(name="catalogue", weight=Decimal("100"), who="bench")
        services.slice_set_shadow(name="catalogue", enabled=False, who="bench")
        for mode in MODES:
            traced = tracing_env(mode, receiver.endpoint)
            port = free_port()
            web = group.start(
                ManagedProcess(
                    f"legacy-{mode}",
                    legacy_process_commands(port=port, web_workers=2)["web"],
                    {**env, **traced, "SERVICE": "legacy"},
                    LOG_DIR / f"observability-legacy-{mode}.log",
                )
            )
            targets[f"legacy_{mode}"] = f"http://127.0.0.1:{port}"
            servers[f"legacy_{mode}"] = web
            wait_http_ok(f"{targets[f'legacy_{mode}']}/healthz", seconds=60, process=web.popen)
            port = free_port()
            proxy = group.start(
                ManagedProcess(
                    f"proxy-{mode}",
                    manage_command("strangler", "serve", "--port", str(port)),
                    {**env, **traced, "SERVICE": "proxy"},
                    LOG_DIR / f"observability-proxy-{mode}.log",
                )
            )
            targets[f"proxy_{mode}"] = f"http://127.0.0.1:{port}"
            servers[f"proxy_{mode}"] = proxy
            wait_http_ok(f"{targets[f'proxy_{mode}']}/_strangler/healthz", seconds=60, process=proxy.popen)
        for base in targets.values():
            wait_http_ok(base + PATH, seconds=30)
            wrk(wrk_bin, base + PATH, connections=CONNECTIONS, seconds=1)  # warm up
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        names = list(targets)
        rounds_started = time.monotonic()
        for round_number in range(1, ROUNDS + 1):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                before = process_group_cpu_seconds(servers[name].pid)
                run = wrk(wrk_bin, targets[name] + PATH, connections=CONNECTIONS, seconds=SECONDS)
                settle([servers[name], receiver.process])
                run["cpu_us_per_request"] = (
                    (process_group_cpu_seconds(servers[name].pid) - before) / run["requests"] * 1e6
                )
                runs[name].append(run)
            progress(
                f"round {round_number}: "
                + ", ".join(
                    f"{name} {runs[name][-1]['rps']:.0f} req/s {runs[name][-1]['cpu_us_per_request']:.0f} us"
                    for name in names
                )
            )
            if time.monotonic() - rounds_started > ROUNDS_BUDGET_SECONDS:
                break
    # Read once every process has stopped (the receiver last, as it started first): the exporters
    # flushed their last batches on the way out.
    spans = receiver.spans()
    services_seen: dict[str, int] = {}
    for span in spans:
        services_seen[span["service"]] = services_seen.get(span["service"], 0) + 1
    figures: dict[str, Any] = {
        "benchmark": "observability",
        "path": PATH,
        "connections": CONNECTIONS,
        "rounds": len(runs[names[0]]),
        "round_seconds": SECONDS,
    }
    for name in targets:
        figures[name] = {
            "rps": round(statistics.median(r["rps"] for r in runs[name]), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs[name]), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs[name]), 3),
            "errors": int(sum(r["non_2xx"] + r["socket_errors"] for r in runs[name])),
            "cpu_us_per_request": round(statistics.median(r["cpu_us_per_request"] for r in runs[name]), 1),
        }

    def per_round(ratio: Any) -> dict[str, float]:
        """Median over rounds of ratio(on, off) for each traced target against its untraced one."""
        return {
            f"{kind}_{mode}_vs_off": round(
                statistics.median(
                    ratio(on, off)
                    for on, off in zip(runs[f"{kind}_{mode}"], runs[f"{kind}_off"], strict=True)
                ),
                3,
            )
            for kind in ("proxy", "legacy")
            for mode in ("default", "full")
        }

    ratios = per_round(lambda on, off: on["rps"] / off["rps"])
    figures["ratios"] = ratios
    # off / on CPU per request: the throughput a CPU-bound server keeps.
    cpu_ratios = per_round(lambda on, off: off["cpu_us_per_request"] / on["cpu_us_per_request"])
    figures["cpu_ratios"] = cpu_ratios
    figures["spans_received"] = services_seen
    figures["goals_met"] = {
        f"{kind}_default_vs_off_ge_{goal}": ratios[f"{kind}_default_vs_off"] >= goal
        for kind, goal in GOALS.items()
    }
    figures["goals_met_cpu"] = {
        f"{kind}_default_vs_off_ge_{goal}": cpu_ratios[f"{kind}_default_vs_off"] >= goal
        for kind, goal in GOALS.items()
    }
    return figures


def settle(processes: list[ManagedProcess]) -> None:
    """Waits until `processes` are idle (the traced server's exporter has sent its last batches and
    the receiver has stored them): their CPU is charged to the run that caused it, and the next
    run does not share the cores with it."""
    last = [process_group_cpu_seconds(p.pid) for p in processes]

    def idle() -> bool:
        now = [process_group_cpu_seconds(p.pid) for p in processes]
        quiet = all(b - a <= 0.011 for a, b in zip(last, now, strict=True))  # one clock tick or less
        last[:] = now
        return quiet

    try:
        wait_until(idle, seconds=15, interval=0.25, what="the server and the receiver idle")
    except WaitTimeout:
        progress("the server or the receiver did not settle within 15 s; measuring on")


def report(figures: dict[str, Any]) -> None:
    print(f"{'':16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU us/req':>11}")
    for kind in ("proxy", "legacy"):
        for mode in MODES:
            row = figures[f"{kind}_{mode}"]
            print(
                f"{kind + ' ' + mode:16} {row['rps']:>9.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['errors']:>7} {row['cpu_us_per_request']:>11.0f}"
            )
    ratios = figures["ratios"]
    print(
        f"tracing on / off (median of per-round ratios): proxy default {ratios['proxy_default_vs_off']} "
        f"(goal >= {GOALS['proxy']}), 100% {ratios['proxy_full_vs_off']}; legacy route default "
        f"{ratios['legacy_default_vs_off']} (goal >= {GOALS['legacy']}), 100% {ratios['legacy_full_vs_off']}"
    )
    cpu = figures["cpu_ratios"]
    print(
        f"CPU per request off / on (median of per-round ratios): proxy default "
        f"{cpu['proxy_default_vs_off']}, 100% {cpu['proxy_full_vs_off']}; legacy route default "
        f"{cpu['legacy_default_vs_off']}, 100% {cpu['legacy_full_vs_off']}"
    )
    print(
        f"spans received per service: {figures['spans_received']}; "
        f"load average {figures['load_average_start_end']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
