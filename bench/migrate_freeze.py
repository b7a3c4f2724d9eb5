"""Benchmark of the write freeze of a cutover: ten cutover (canary -> live) and rollback (live ->
canary) cycles of the shop-orders slice under steady `manage.py traffic` through the proxy, each
freeze measured from its commit to the flip's commit (migrations/cutover.py).

Runs the monolith's web process seeded with `manage.py seed`, the proxy (`manage.py strangler
serve`), `migrate_data backfill` of the catalogue (the order lines' products) and of shop-orders,
and `migrate_data sync --slice shop-orders`, all on databases of its own
(`<DB_NAME_PREFIX>bench_migrate_freeze_*`, created empty at the start and dropped at the end). The
cutovers and rollbacks run in this process through `cutover_run` and `rollback_run`.

The shop service serves no routes yet, so the slice's new backend is the monolith itself (the
`new_backend` field says so): after a flip the proxy sends the slice's requests to the "new" side,
which answers them from legacy. What the freeze holds and waits for is the same: writes in flight
at legacy, the forward (or reverse) stream draining to the marker, the verification of what changed,
the sequences, the flip.

Progress goes to stderr; one JSON line at the end on stdout. Goal: freeze p99 < 1000 ms (aim 250).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.django_bootstrap import bench_django_start

BENCH_PREFIX = bench_django_start("migrate_freeze", service="migrations")

from decimal import Decimal  # noqa: E402

from django.conf import settings  # noqa: E402

from harness.own_databases import own_databases  # noqa: E402
from harness.percentiles import percentile  # noqa: E402
from harness.waiting import wait_http_ok, wait_until  # noqa: E402
from legacy.processes import legacy_process_commands  # noqa: E402
from migrations.cutover import (  # noqa: E402
    CutoverResult,
    cutover_run,
    marker_arrived,
    marker_write,
    rollback_run,
)
from migrations.models import RunOutcome  # noqa: E402
from migrations.slices import slice_get  # noqa: E402
from ops.process_group import (  # noqa: E402
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    manage_command,
)
from strangler import selectors, services  # noqa: E402
from strangler.plan import plan_load_file  # noqa: E402

SLICE = "shop-orders"
CYCLES = 10
MAX_FREEZE_MS = 1000
# Requests/s of the default mix (customers browse and order, staff, partners): what the monolith's
# two web workers answer here without queueing (at 40/s its p50 passed 500 ms on the shared cores).
TRAFFIC_RATE = 20
LIVE_SECONDS = 4.0  # in live between a cutover and its rollback (the reverse stream starts meanwhile)
CANARY_SECONDS = 3.0
LOG_DIR = PROJECT_ROOT / ".local" / "bench-logs"


def progress(message: str) -> None:
    print(f"[bench migrate_freeze] {message}", file=sys.stderr, flush=True)


def run_command(env: dict[str, str], *args: str, service: str) -> str:
    result = subprocess.run(
        manage_command(*args),
        cwd=PROJECT_ROOT,
        env={**os.environ, **env, "SERVICE": service},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode:
        raise RuntimeError(f"`manage.py {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main() -> None:
    started = time.monotonic()
    load_at_start = round(os.getloadavg()[0], 2)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    progress(f"preparing fresh databases {BENCH_PREFIX}* (dropped at the end)")
    with own_databases(BENCH_PREFIX):
        figures = measure()
    figures["load_average_start_end"] = [load_at_start, round(os.getloadavg()[0], 2)]
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures, separators=(",", ":")))


def measure() -> dict[str, Any]:
    env = {
        **database_env(settings.DATABASES),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "LOG_LEVEL": "WARNING",
    }
    progress("seeding the monolith")
    run_command(env, "seed", service="legacy")
    with ProcessGroup() as group:
        legacy_port, proxy_port = free_port(), free_port()
        web = legacy_process_commands(port=legacy_port, web_workers=2)["web"]
        legacy = group.start(
            ManagedProcess("legacy-web", web, {**env, "SERVICE": "legacy"}, LOG_DIR / "freeze-legacy-web.log")
        )
        legacy_url = f"http://127.0.0.1:{legacy_port}"
        wait_http_ok(f"{legacy_url}/healthz", seconds=60, process=legacy.popen)
        # The plan's URLs come from the environment: the shop service's is the monolith's (see above).
        os.environ["LEGACY_URL"] = os.environ["SHOP_URL"] = env["LEGACY_URL"] = env["SHOP_URL"] = legacy_url
        services.plan_apply(plan=plan_load_file(settings.STRANGLER_PLAN_FILE), who="bench")
        for slice_name in ("catalogue", SLICE):
            progress(f"backfilling {slice_name}")
            run_command(env, "migrate_data", "backfill", "--slice", slice_name, service="migrations")
        sync = group.start(
            ManagedProcess(
                "sync",
                manage_command("migrate_data", "sync", "--slice", SLICE, "--metrics-port", "0"),
                {**env, "SERVICE": "migrations", "LOG_LEVEL": "INFO"},
                LOG_DIR / "freeze-sync.log",
            )
        )
        proxy = group.start(
            ManagedProcess(
                "proxy",
                manage_command("strangler", "serve", "--port", str(proxy_port)),
                {**env, "SERVICE": "proxy"},
                LOG_DIR / "freeze-proxy.log",
            )
        )
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        wait_http_ok(f"{proxy_url}/_strangler/healthz", seconds=60, process=proxy.popen)
        for _ in range(3):
            services.slice_promote(name=SLICE, who="bench", force=True, why="benchmark setup")
        wait_until(lambda: selectors.proxies_seen(seen_seconds=3), seconds=10, what="the proxy's heartbeat")
        traffic_seconds = CYCLES * (LIVE_SECONDS + CANARY_SECONDS + 6) + 60
        traffic = group.start(
            ManagedProcess(
                "traffic",
                manage_command(
                    "traffic",
                    "--base-url",
                    proxy_url,
                    "--rate",
                    str(TRAFFIC_RATE),
                    "--duration",
                    str(traffic_seconds),
                    "--json",
                ),
                {**env, "SERVICE": "legacy"},
                LOG_DIR / "freeze-traffic.log",
            )
        )
        slice_ = slice_get(SLICE)
        token = marker_write(slice_, "forward")
        wait_until(
            lambda: marker_arrived(slice_, "forward", token),
            seconds=120,
            interval=0.2,
            what="the forward stream streaming",
            process=sync,
        )
        time.sleep(3)  # traffic under way
        results = cycles_run(sync)
        assert traffic.popen is not None
        traffic.popen.send_signal(signal.SIGINT)  # it stops and prints its summary
        traffic.popen.wait(timeout=60)
        summary = traffic_summary(LOG_DIR / "freeze-traffic.log")
    return figures_of(results, summary)


def cycles_run(sync: ManagedProcess) -> list[CutoverResult]:
    results: list[CutoverResult] = []
    for cycle in range(1, CYCLES + 1):
        if not sync.alive():
            raise RuntimeError(f"the sync exited:\n{sync.log_tail()}")
        # A rollback leaves the slice in canary at weight 0 (reads back on legacy too): the operator
        # sets every cohort on the new side again before the next cutover.
        services.slice_set_weight(name=SLICE, weight=Decimal(100), who="bench")
        result = cutover_run(SLICE, who="bench", max_freeze_ms=MAX_FREEZE_MS, report=_quiet)
        results.append(result)
        progress(f"cycle {cycle}: cutover {result.outcome}, freeze {result.freeze_ms} ms {result.steps_ms}")
        if result.outcome != RunOutcome.COMPLETED:
            time.sleep(CANARY_SECONDS)
            continue
        time.sleep(LIVE_SECONDS)
        for _attempt in range(3):
            back = rollback_run(SLICE, who="bench", max_freeze_ms=MAX_FREEZE_MS, report=_quiet)
            results.append(back)
            progress(f"cycle {cycle}: rollback {back.outcome}, freeze {back.freeze_ms} ms {back.steps_ms}")
            if back.outcome == RunOutcome.COMPLETED:
                break
            time.sleep(1)
        time.sleep(CANARY_SECONDS)
    return results


def _quiet(line: str) -> None:
    """The runs' step-by-step lines; the benchmark prints one per run instead."""


def traffic_summary(log_path: Path) -> dict[str, Any]:
    for line in reversed(log_path.read_text(errors="replace").splitlines()):
        if line.startswith("{") and '"requests"' in line:
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                continue
    return {}


def figures_of(results: list[CutoverResult], traffic: dict[str, Any]) -> dict[str, Any]:
    freezes = [r.freeze_ms for r in results if r.freeze_ms is not None]
    by_kind = {
        kind: [r.freeze_ms for r in results if r.kind == kind and r.freeze_ms is not None]
        for kind in ("cutover", "rollback")
    }
    steps: dict[str, list[float]] = {}
    for r in results:
        for step, ms in r.steps_ms.items():
            steps.setdefault(step, []).append(ms)
    return {
        "freeze_ms_p50": round(percentile(freezes, 0.5), 1),
        "freeze_ms_p99": round(percentile(freezes, 0.99), 1),
        "freeze_ms_max": round(max(freezes, default=0.0), 1),
        "cycles": CYCLES,
        "freezes": len(freezes),
        "max_freeze_ms": MAX_FREEZE_MS,
        "completed": sum(r.outcome == RunOutcome.COMPLETED for r in results),
        "aborted": [f"{r.kind}:{r.failed_step}" for r in results if r.outcome != RunOutcome.COMPLETED],
        "cutover_freeze_ms": by_kind["cutover"],
        "rollback_freeze_ms": by_kind["rollback"],
        "step_ms_p50": {step: round(percentile(values, 0.5), 1) for step, values in steps.items()},
        "traffic_rate": TRAFFIC_RATE,
        "traffic_requests": traffic.get("requests"),
        "traffic_errors": traffic.get("errors"),
        "new_backend": "the monolith as a stand-in (the shop service serves no routes yet)",
        "goal_p99_ms": 1000,
        "aim_p99_ms": 250,
    }


if __name__ == "__main__":
    main()
