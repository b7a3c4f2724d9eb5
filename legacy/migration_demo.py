"""The migration story `manage.py demo` tells: the proxy in front of the monolith, traffic running,
the shop's slices and the CRM's slice going legacy -> syncing -> shadow -> canary -> live (and one
rollback and its second cutover), then what it cost: time in each phase, freeze durations, rows
copied and verified, requests served by each side, customer-visible errors.

Every step is the operator's command (`manage.py strangler ...`, `manage.py migrate_data ...`) run
as a child process the way the README says, so the story shows what an operator types. The story
is the monolith's (its slices, its services), so it lives here; processes are started through the
services' registrations (SERVICE_PROCESSES), never by importing another service.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from django.conf import settings
from django.db import connections

from config.processes import PROCESSES
from config.routers import database_alias
from harness.waiting import wait_http_ok
from ops.process_group import (
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    manage_command,
    service_process_commands,
)

# The slices the story moves, in the order their phases advance (the CRM's needs the shop's orders).
# `pricing` moves the MES quotes API to the pricing service (its rules, discounts and API keys by the
# toolkit; the catalogue's cost data through its own projection, fed by the catalogue capture).
SLICES = ("catalogue", "shop-orders", "crm-orders", "pricing")
# The catalogue tables and their projection in the pricing database: the pricing slice waits until
# the capture's initial snapshot has reached the projection.
CATALOGUE_PROJECTION = {
    "shop_material": "pricing_material",
    "shop_product": "pricing_product",
    "shop_product_material": "pricing_product_material",
    "shop_product_option": "pricing_product_option",
}
# The deprecated external read the story shows the headers of (served by the pricing service).
DEPRECATED_READ = "/mes/api/production-orders/?limit=1"
ROLLBACK_SLICE = "catalogue"
# Gates lowered so that the story fits in about two minutes (the plan's own are for production).
DEMO_GATES = {"min_shadow_requests": 10, "max_shadow_diff_rate": 0.05, "soak_seconds": 0}
LOG_DIR = PROJECT_ROOT / ".local" / "demo-logs"
CHECKPOINT_TABLE = "migration_backfill_checkpoint"  # the toolkit's (migrations/state.py)


class StoryFailed(Exception):
    """A step of the story failed; the message says which and where its output is."""


@dataclass
class Figures:
    phase_entered: dict[str, dict[str, float]] = field(default_factory=dict)
    freezes_ms: list[tuple[str, str, float]] = field(default_factory=list)
    rows_copied: dict[str, int] = field(default_factory=dict)
    rows_verified: dict[str, int] = field(default_factory=dict)
    aborted: list[str] = field(default_factory=list)
    # slice -> route -> {"compared": n, "differing": m}, as `strangler shadow-report` gave them when the
    # slice left its shadow phase.
    shadow: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)


@dataclass
class Stack:
    env: dict[str, str]
    proxy_url: str
    legacy_url: str
    pricing_url: str = ""


class MigrationStory:
    def __init__(self, *, out: TextIO, rate: float) -> None:
        self.out = out
        self.rate = rate
        self.started = time.monotonic()
        self.figures = Figures()

    # output

    def say(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.started:6.1f}s] {text}\n")
        self.out.flush()

    # operator commands

    def manage(
        self, env: dict[str, str], *args: str, service: str | None = None, timeout: float = 180
    ) -> str:
        """Runs `manage.py ARGS` as an operator would (SERVICE unset: manage.py picks the owner)."""
        child_env = {**os.environ, **env}
        child_env.pop("SERVICE", None)
        if service:
            child_env["SERVICE"] = service
        self.say("$ " + ("SERVICE=" + service + " " if service else "") + "manage.py " + " ".join(args))
        done = subprocess.run(
            manage_command(*args),
            env=child_env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise StoryFailed(f"`manage.py {' '.join(args)}` failed:\n{(done.stderr or done.stdout)[-1500:]}")
        return done.stdout

    def json_of(self, env: dict[str, str], *args: str) -> Any:
        output = self.manage(env, *args)
        return json.loads(output.strip().splitlines()[-1])

    # the stack

    def demo_plan(self) -> Path:
        """The plan with the demo's lowered gates, written to .local/demo-plan.yaml."""
        plan = self.plan = yaml.safe_load(Path(settings.STRANGLER_PLAN_FILE).read_text())
        for name in SLICES:
            slice_ = plan["slices"][name]
            slice_["gates"] = {**slice_.get("gates", {}), **DEMO_GATES}
            slice_.setdefault("shadow", {})["sample_rate"] = 1.0
            slice_.setdefault("canary", {})["pin_after_write_seconds"] = 3
        path = PROJECT_ROOT / ".local" / "demo-plan.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Written by `manage.py demo`: the migration plan with gates lowered to fit the story.\n"
            + yaml.safe_dump(plan, sort_keys=False)
        )
        return path

    def start(self, group: ProcessGroup, api_key: str) -> Stack:
        ports = {name: free_port() for name in ("legacy", "shop", "crm", "mes_pricing", "proxy")}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        env = {
            **database_env(settings.DATABASES),
            "STRANGLER_PLAN_FILE": str(self.demo_plan()),
            "LEGACY_URL": urls["legacy"],
            "SHOP_URL": urls["shop"],
            "CRM_URL": urls["crm"],
            "MES_PRICING_URL": urls["mes_pricing"],
            "SHOP_INTERNAL_URL": urls["shop"],
            # The shop prices orders through the MES quotes API behind the proxy: the monolith answers
            # until the pricing slice goes live, the pricing service after.
            "MES_API_URL": urls["proxy"],
            "MES_API_KEY": api_key,
            "CRM_POLL_INTERVAL_SECONDS": "2",
            "MES_STAGE_SECONDS": "1",
            "ORCHESTRATION_MODE": "polling",
        }
        for service in ("legacy", "shop", "crm", "mes_pricing"):
            commands = service_process_commands(service, port=ports[service], web_workers=2)
            for name, command in commands.items():
                if service in ("shop", "crm") and name != "web":
                    continue  # their event relays and consumers are not part of this story
                group.start(
                    ManagedProcess(
                        f"{service}-{name}",
                        command,
                        {**env, "SERVICE": service},
                        LOG_DIR / f"{service}-{name}.log",
                    )
                )
        # The catalogue's change stream feeds the pricing service's cost projection (its first start
        # announces every existing row from a snapshot).
        group.start(
            ManagedProcess(
                "cdc-catalogue",
                manage_command("cdc", "run", "--capture", "catalogue"),
                {**env, "SERVICE": "cdc"},
                LOG_DIR / "cdc-catalogue.log",
            )
        )
        for service in ("legacy", "shop", "crm", "mes_pricing"):
            wait_http_ok(f"{urls[service]}/healthz", seconds=60)
        self.say(
            f"Monolith on {urls['legacy']}, shop service on {urls['shop']}, CRM service on {urls['crm']}, "
            f"pricing service on {urls['mes_pricing']}."
        )
        self.manage(env, "strangler", "load-plan", "--who", "demo")
        proxy = group.start(
            ManagedProcess(
                "proxy",
                manage_command("strangler", "serve", "--port", str(ports["proxy"])),
                {**env, "SERVICE": "proxy"},
                LOG_DIR / "proxy.log",
            )
        )
        wait_http_ok(f"{urls['proxy']}/_strangler/healthz", seconds=60, process=proxy.popen)
        self.say(f"Proxy in front of everything: {urls['proxy']} (customers, staff and partners talk to it).")
        return Stack(
            env=env, proxy_url=urls["proxy"], legacy_url=urls["legacy"], pricing_url=urls["mes_pricing"]
        )

    # the phases

    def reset(self, group: ProcessGroup, env: dict[str, str]) -> None:
        """A previous run may have left slices past legacy (rolled back to the start with their syncs
        running, so that a live slice's last writes reach legacy; streams dropped) and rows in the new
        databases (emptied: the story starts from the monolith alone)."""
        statuses = self.json_of(env, "migrate_data", "status", "--json")
        by_name = {status["name"]: status for status in statuses}
        moved = [
            name for name in reversed(SLICES) if by_name.get(name, {}).get("phase") not in (None, "legacy")
        ]
        syncs = [self.sync_start(group, env, name) for name in moved]
        for name in moved:  # dependents first; their syncs need a few seconds to start their engines
            # Until a reverse stream runs, a rollback is refused (its marker did not arrive) or aborts
            # within its freeze bound: both leave the slice as it was, so the operator tries again.
            self.retried(
                env,
                ("migrate_data", "rollback", "--slice", name, "--to", "legacy"),
                ("did not arrive", "aborted"),
                120,
            )
        for sync in syncs:
            sync.stop()
        emptied = []
        for status in statuses:
            if status["name"] not in SLICES or not status["backfill"]:
                continue
            spec = self.plan["slices"][status["name"]]
            alias = database_alias(PROCESSES[spec["service"]].database)
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT to_regclass(%s)", [CHECKPOINT_TABLE])
                if cursor.fetchone()[0] is not None:
                    cursor.execute(f"DELETE FROM {CHECKPOINT_TABLE} WHERE slice_name = %s", [status["name"]])
                tables = ", ".join(f'"{table}"' for table in spec["tables"])
                cursor.execute(f"TRUNCATE {tables} CASCADE")
            emptied.append(status["name"])
        if emptied:
            self.say(f"A previous demo left rows in the new databases: emptied {', '.join(emptied)}.")

    def entered(self, name: str, phase: str) -> None:
        self.figures.phase_entered.setdefault(name, {})[phase] = time.monotonic()

    def promote(self, env: dict[str, str], name: str, phase: str, *, wait_seconds: float = 0) -> None:
        """`strangler promote`, retried while its gate does not pass yet (at most `wait_seconds`)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                self.manage(env, "strangler", "promote", name, "--who", "demo")
                break
            except StoryFailed as exc:
                if time.monotonic() > deadline or "did not pass" not in str(exc):
                    raise
                time.sleep(2)
        self.entered(name, phase)

    def run(self, group: ProcessGroup, stack: Stack) -> None:
        env = stack.env
        for name in SLICES:
            self.promote(env, name, "syncing")  # the plan is valid
        for name in SLICES:
            output = self.manage(env, "migrate_data", "backfill", "--slice", name)
            summary = output.strip().splitlines()[-1]
            self.out.write(f"         {summary}\n")
            match = re.search(r"done: (\d+) rows", summary)
            self.figures.rows_copied[name] = int(match.group(1)) if match else 0
            self.sync_start(group, env, name)
            self.say(f"sync of {name} started (forward stream; the reverse one starts at its cutover)")
        self.catalogue_projected(seconds=120)
        for name in SLICES:
            report = self.verified(env, name)
            self.figures.rows_verified[name] = int(report["rows_checked"])
            self.promote(env, name, "shadow", wait_seconds=30)  # verified, sync lag under bound
        for name in SLICES:
            self.promote(env, name, "canary", wait_seconds=90)  # shadow answers the same
            self.shadow_of(env, name)
        for weight in ("50", "100"):
            for name in SLICES:
                self.manage(env, "strangler", "weight", name, weight, "--who", "demo")
            time.sleep(2)
        for name in SLICES:
            self.cutover(env, name)
        self.say(
            f"Rolling {ROLLBACK_SLICE} back from live (reverse sync kept legacy current), then forward again."
        )
        self.freeze_of(
            self.manage(env, "migrate_data", "rollback", "--slice", ROLLBACK_SLICE),
            ROLLBACK_SLICE,
            "rollback",
        )
        self.entered(ROLLBACK_SLICE, "canary")
        self.manage(env, "strangler", "weight", ROLLBACK_SLICE, "100", "--who", "demo")
        self.cutover(env, ROLLBACK_SLICE)

    def back_to_legacy(self, env: dict[str, str]) -> None:
        """Every slice rolled back to legacy, dependents first, while the syncs still run: reverse
        sync has kept legacy current, so the monolith takes over again with every write."""
        for name in reversed(SLICES):
            output = self.manage(env, "migrate_data", "rollback", "--slice", name, "--to", "legacy")
            self.out.write("         " + output.strip().splitlines()[-1][:200] + "\n")
            self.entered(name, "legacy")

    def retried(
        self, env: dict[str, str], args: tuple[str, ...], refusals: tuple[str, ...], seconds: float
    ) -> str:
        """`manage.py ARGS`, again while it is refused with one of `refusals` (it changed nothing then)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                return self.manage(env, *args)
            except StoryFailed as exc:
                if time.monotonic() > deadline or not any(refusal in str(exc) for refusal in refusals):
                    raise
                time.sleep(3)

    def sync_start(self, group: ProcessGroup, env: dict[str, str], name: str) -> ManagedProcess:
        self.say(f"$ manage.py migrate_data sync --slice {name}   (a long-running process)")
        return group.start(
            ManagedProcess(
                f"sync-{name}",
                manage_command("migrate_data", "sync", "--slice", name),
                {**env, "SERVICE": "migrations"},
                LOG_DIR / f"sync-{name}.log",
            )
        )

    def verified(self, env: dict[str, str], name: str) -> dict[str, Any]:
        """A full verification; under traffic a row may be in flight, so it is tried a few times."""
        for _ in range(3):
            try:
                report = self.json_of(env, "migrate_data", "verify", "--slice", name, "--json")
            except StoryFailed as exc:
                self.say(f"not clean yet: {str(exc)[-600:]}")
                time.sleep(2)
                continue
            if report["clean"]:
                self.say(f"{name}: {report['rows_checked']} rows verified equal on both sides")
                return dict(report)
        raise StoryFailed(
            f"Verification of {name} did not come out clean; see `manage.py migrate_data verify`."
        )

    def cutover(self, env: dict[str, str], name: str) -> None:
        """A cutover that ran past its freeze bound aborted cleanly (writes went to legacy, the slice
        stayed canary): the operator tries again, as the demo does up to three times."""
        for attempt in range(3):
            try:
                output = self.manage(env, "migrate_data", "cutover", "--slice", name, "--who", "demo")
            except StoryFailed as exc:
                if "aborted" not in str(exc) or attempt == 2:
                    raise
                self.figures.aborted.append(name)
                self.say(f"the cutover of {name} aborted within its bound (nothing lost); trying again")
                continue
            self.freeze_of(output, name, "cutover")
            self.entered(name, "live")
            return

    def shadow_of(self, env: dict[str, str], name: str) -> None:
        output = self.manage(env, "strangler", "shadow-report", "--slice", name, "--samples", "1")
        routes = self.figures.shadow.setdefault(name, {})
        for match in re.finditer(r"^[\w-]+/([\w-]+): compared=(\d+) differing=(\d+)", output, re.M):
            routes[match.group(1)] = {"compared": int(match.group(2)), "differing": int(match.group(3))}
        shown = ", ".join(f"{route} {n['differing']}/{n['compared']}" for route, n in routes.items())
        self.say(f"{name}: shadow compared, differing/compared per route: {shown or 'none'}")

    def catalogue_projected(self, *, seconds: float) -> None:
        """Waits until the pricing service's cost projection holds every catalogue row (the capture's
        snapshot and the consumer run beside the story; quotes compare only once it is complete)."""
        deadline = time.monotonic() + seconds
        while True:
            counts = {}
            for source, projection in CATALOGUE_PROJECTION.items():
                counts[source] = [
                    _count(alias, table)
                    for alias, table in (("default", source), (database_alias("pricing"), projection))
                ]
            if all(legacy == projected for legacy, projected in counts.values()):
                rows = sum(legacy for legacy, _ in counts.values())
                self.say(f"pricing: the catalogue's cost projection holds all {rows} catalogue rows")
                return
            if time.monotonic() > deadline:
                raise StoryFailed(
                    f"The pricing service's catalogue projection is incomplete after {seconds:.0f} s "
                    f"(legacy, projected rows: {counts}); see {LOG_DIR / 'cdc-catalogue.log'} and "
                    f"{LOG_DIR / 'mes_pricing-catalogue-consumer.log'}."
                )
            time.sleep(1)

    def deprecation_headers(self, stack: Stack, api_key: str) -> dict[str, str]:
        """What an external user of the deprecated production-order read sees from the pricing service."""
        request = urllib.request.Request(
            f"{stack.pricing_url}{DEPRECATED_READ}", headers={"X-API-Key": api_key}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as exc:
            status, headers = exc.code, exc.headers
        shown = {name: headers.get(name, "") for name in ("Deprecation", "Sunset", "Link")}
        self.say(f"GET {DEPRECATED_READ} on the pricing service: {status}")
        for name, value in shown.items():
            self.out.write(f"         {name}: {value}\n")
        return {"status": str(status), **shown}

    def freeze_of(self, output: str, name: str, kind: str) -> None:
        match = re.search(r": (\w[\w-]*), .*writes frozen ([\d.]+) ms", output)
        if not match or match.group(1) != "completed":
            raise StoryFailed(f"The {kind} of {name} did not complete:\n{output}")
        self.figures.freezes_ms.append((name, kind, float(match.group(2))))
        self.say(f"{kind} of {name}: writes frozen for {float(match.group(2)):.0f} ms")


def _count(alias: str, table: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{table}"')
        return int(cursor.fetchone()[0])
