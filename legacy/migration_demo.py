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
from legacy.traffic.credentials import traffic_data_load
from legacy.traffic.scenarios import error_code
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
# Production runs in the production service (MES_PRODUCTION=service; the hand-over from the legacy
# MES, docs/data-migration.md, is a story of its own): it learns orders from their events (the
# monolith's change stream, then the shop's outbox) and its production.* events come back as order
# status through the consumer group of the side that owns the orders, switched around the orders
# slice's cutover and rollback as docs/data-migration.md says ("Order status from production").
ORDERS_SLICE = "shop-orders"
STATUS_GROUPS = {"legacy": "legacy-production-status", "shop": "shop-production-status"}
# A confirmation of an order placed before the production service's queues existed (the seed's) can
# never be produced (ShopOrderUnknown, see that runbook): dead-lettered after short retries, it does
# not hold the later orders of its partition for the default backoff (seconds).
PRODUCTION_CONSUMER_RETRY = {"CONSUMER_RETRY_BASE_SECONDS": "0.05", "CONSUMER_RETRY_MAX_SECONDS": "0.5"}
# Gates lowered so that the story fits in about two minutes (the plan's own are for production).
DEMO_GATES = {"min_shadow_requests": 10, "max_shadow_diff_rate": 0.05, "soak_seconds": 0}
LOG_DIR = PROJECT_ROOT / ".local" / "demo-logs"
# The demo runs some thirty processes on one machine (two cores where it is tested). What answers
# customers (the proxy, the services' web processes) keeps the normal priority; the background work
# (change streams, consumers, relays, the stage runner, Celery, the trace receiver) runs niced, so a
# JVM starting or a consumer catching up does not make a customer's request wait seconds. The data
# sync streams are niced less: a cutover's write freeze waits for its marker to come through them.
BACKGROUND_NICE = 10
SYNC_NICE = 5
# Every process exports its spans to the demo's own trace receiver (`manage.py observability traces
# receive`); traffic is sampled at the default rate, the one order the story follows at the end always.
SPAN_FILE = LOG_DIR / "spans.jsonl"
CHECKPOINT_TABLE = "migration_backfill_checkpoint"  # the toolkit's (migrations/state.py)


class StoryFailed(Exception):
    """A step of the story failed; the message says which and where its output is."""


class OrderTaken(StoryFailed):
    """The order the demo meant to confirm was confirmed by someone else first."""


INVALID_TRANSITION = "invalid_transition"  # the CRM's answer to confirming an order that is not placed


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
        self.status_consumer: ManagedProcess | None = None
        self.legacy_capture: ManagedProcess | None = None
        self.orders_owner = "legacy"

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
        services = ("legacy", "shop", "crm", "mes_pricing", "mes_production")
        web_services = ("legacy", "shop", "crm", "mes_pricing")
        ports = {name: free_port() for name in (*services, "proxy", "traces")}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        SPAN_FILE.unlink(missing_ok=True)
        group.start(
            ManagedProcess(
                "traces",
                manage_command(
                    "observability",
                    "traces",
                    "receive",
                    "--port",
                    str(ports["traces"]),
                    "--file",
                    str(SPAN_FILE),
                ),
                {},
                LOG_DIR / "traces.log",
                nice=BACKGROUND_NICE,
            )
        )
        wait_http_ok(f"{urls['traces']}/healthz", seconds=30)
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": urls["traces"],
            "OTEL_BSP_SCHEDULE_DELAY": "500",  # spans reach the receiver within a second
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
            "MES_STAGE_SECONDS": "1",
            # The CRM's wait for the shop on a staff confirmation (2 s by default): on two cores running
            # the whole story the shop's web stalled past 2 s at moments (one 503 of 3,679 requests in
            # a CI run); 5 s is still half of what the traffic's customers wait.
            "SHOP_INTERNAL_TIMEOUT": "5",
            # The CRM no longer polls: orders reach the production service as events.
            "ORCHESTRATION_MODE": "events",
            "MES_PRODUCTION": "service",
        }
        for service in services:
            commands = service_process_commands(service, port=ports[service], web_workers=2)
            for name, command in commands.items():
                if service == "crm" and name != "web":
                    continue  # the CRM's consumer and relay (deleted customers' notes) are not in this story
                if service == "mes_production" and name == "web":
                    continue  # health and metrics only: nobody in this story asks it
                extra = PRODUCTION_CONSUMER_RETRY if service == "mes_production" else {}
                group.start(
                    ManagedProcess(
                        f"{service}-{name}",
                        command,
                        {**env, "SERVICE": service, **extra},
                        LOG_DIR / f"{service}-{name}.log",
                        nice=0 if name == "web" else BACKGROUND_NICE,
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
                nice=BACKGROUND_NICE,
            )
        )
        self.legacy_capture_start(group, env)
        # The shop's status group runs from the orders slice's cutover on: its queues keep every
        # production event until then.
        self.manage(env, "consume", STATUS_GROUPS["shop"], "--declare-only", service="shop")
        for service in web_services:
            wait_http_ok(f"{urls[service]}/healthz", seconds=60)
        self.say(
            f"Monolith on {urls['legacy']}, shop service on {urls['shop']}, CRM service on {urls['crm']}, "
            f"pricing service on {urls['mes_pricing']}; the production service's consumer, stage runner "
            "and outbox relay beside them."
        )
        self.manage(env, "strangler", "load-plan", "--who", "demo")
        proxy = group.start(
            ManagedProcess(
                "proxy",
                manage_command("strangler", "serve", "--port", str(ports["proxy"])),
                # The demo's operator reads the proxy's metrics from this machine: an internal caller.
                {**env, "SERVICE": "proxy", "STRANGLER_INTERNAL_NETWORKS": "127.0.0.1/32,::1/128"},
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
        self.status_group_start(group, env, owner="legacy")  # the monolith owns the orders again

    def entered(self, name: str, phase: str) -> None:
        self.figures.phase_entered.setdefault(name, {})[phase] = time.monotonic()

    def promote(self, env: dict[str, str], name: str, phase: str, *, wait_seconds: float = 0) -> None:
        """`strangler promote`, retried while its gate does not pass yet (at most `wait_seconds`)."""
        self.retried(env, ("strangler", "promote", name, "--who", "demo"), ("did not pass",), wait_seconds)
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
            # Verified, sync lag under bound: on a loaded machine a stream's lag takes a while to settle
            # after the other streams' engines start.
            self.promote(env, name, "shadow", wait_seconds=90)
        for name in SLICES:
            self.promote(env, name, "canary", wait_seconds=90)  # shadow answers the same
            self.shadow_of(env, name)
        for weight in ("50", "100"):
            for name in SLICES:
                self.manage(env, "strangler", "weight", name, weight, "--who", "demo")
            time.sleep(2)
        for name in SLICES:
            self.cutover(group, env, name)
        self.say(
            f"Rolling {ROLLBACK_SLICE} back from live (reverse sync kept legacy current), then forward again."
        )
        self.freeze_of(self.frozen_step(env, ROLLBACK_SLICE, "rollback"), ROLLBACK_SLICE, "rollback")
        self.entered(ROLLBACK_SLICE, "canary")
        self.manage(env, "strangler", "weight", ROLLBACK_SLICE, "100", "--who", "demo")
        self.cutover(group, env, ROLLBACK_SLICE)

    def back_to_legacy(self, group: ProcessGroup, env: dict[str, str]) -> None:
        """Every slice rolled back to legacy, dependents first, while the syncs still run: reverse
        sync has kept legacy current, so the monolith takes over again with every write."""
        for name in reversed(SLICES):
            if name == ORDERS_SLICE:
                self.status_group_stop()
            output = self.frozen_step(env, name, "rollback", "--to", "legacy")
            self.out.write("         " + output.strip().splitlines()[-1][:200] + "\n")
            self.entered(name, "legacy")
            if name == ORDERS_SLICE:
                self.legacy_capture_start(group, env)
                self.status_group_start(group, env, owner="legacy")

    def legacy_capture_start(self, group: ProcessGroup, env: dict[str, str]) -> None:
        """The monolith's change stream: the orders' events while the monolith owns them. The shop's
        outbox relay announces them while the shop does (legacy_capture_stop)."""
        self.legacy_capture = group.start(
            ManagedProcess(
                "cdc-legacy",
                manage_command("cdc", "run"),
                {**env, "SERVICE": "cdc"},
                LOG_DIR / "cdc-legacy.log",
                nice=BACKGROUND_NICE,
            )
        )

    def legacy_capture_stop(self) -> None:
        """Stops the monolith's change stream once the shop owns the orders. Left running, it would
        announce every order change a second time, under other event ids, from the rows the reverse
        sync copies into the monolith (the shop's outbox announced them already): the consumers
        would apply the facts once (idempotent by order), but the first copy to arrive is not always
        the one that carries the request's trace. The capture does not yet tell the reverse sync's
        transactions apart; stopping it is the runbook's step until it does. SIGTERM after a few
        seconds: what the monolith wrote before the flip is published first (its lag is tens of ms);
        anything not yet read stays in its slot for the next start."""
        if self.legacy_capture is not None:
            time.sleep(3)
            self.say(
                "stopping the monolith's change stream: the shop's outbox relay announces the orders now"
            )
            self.legacy_capture.stop()
            self.legacy_capture = None

    def status_group_start(self, group: ProcessGroup, env: dict[str, str], *, owner: str) -> None:
        """The production status group of the side that owns the orders (only that one runs)."""
        name = STATUS_GROUPS[owner]
        self.say(f"$ SERVICE={owner} manage.py consume {name}   (a long-running process)")
        self.status_consumer = group.start(
            ManagedProcess(
                name,
                manage_command("consume", name),
                {**env, "SERVICE": owner},
                LOG_DIR / f"{name}.log",
                nice=BACKGROUND_NICE,
            )
        )
        self.orders_owner = owner

    def status_group_stop(self) -> None:
        """Stops the running status group (SIGTERM: the message in hand is finished and acknowledged)
        before the orders change hands: its events wait in the queues meanwhile."""
        if self.status_consumer is not None:
            self.say(f"stopping {STATUS_GROUPS[self.orders_owner]} before the orders change hands")
            self.status_consumer.stop()
            self.status_consumer = None

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
                time.sleep(2)

    def sync_start(self, group: ProcessGroup, env: dict[str, str], name: str) -> ManagedProcess:
        self.say(f"$ manage.py migrate_data sync --slice {name}   (a long-running process)")
        return group.start(
            ManagedProcess(
                f"sync-{name}",
                manage_command("migrate_data", "sync", "--slice", name),
                {**env, "SERVICE": "migrations"},
                LOG_DIR / f"sync-{name}.log",
                nice=SYNC_NICE,
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

    def frozen_step(self, env: dict[str, str], name: str, step: str, *args: str) -> str:
        """`migrate_data cutover|rollback --slice NAME ARGS`. One that ran past its freeze bound
        aborted cleanly (the held writes went to the side that owned them, the slice stayed where it
        was; a loaded machine's stream may take longer than the bound to bring a marker through): the
        operator tries again, as the demo does up to three times."""
        for attempt in range(3):
            try:
                output = self.manage(env, "migrate_data", step, "--slice", name, *args)
            except StoryFailed as exc:
                if "aborted" not in str(exc) or attempt == 2:
                    raise
                self.figures.aborted.append(f"{step} {name}")
                self.say(f"the {step} of {name} aborted within its bound (nothing lost); trying again")
                continue
            return output
        raise AssertionError("unreachable")

    def cutover(self, group: ProcessGroup, env: dict[str, str], name: str) -> None:
        """A cutover, tried again while it aborts within its bound. The orders' status group changes
        with the orders' owner."""
        if name == ORDERS_SLICE:
            self.status_group_stop()
        self.freeze_of(self.frozen_step(env, name, "cutover", "--who", "demo"), name, "cutover")
        self.entered(name, "live")
        if name == ORDERS_SLICE:
            self.status_group_start(group, env, owner="shop")
            self.legacy_capture_stop()

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

    def traced_order(self, stack: Stack, *, staff_token: str, seconds: float = 60) -> list[str]:
        """One order followed end to end: placed by a customer and confirmed by staff through the
        proxy inside one sampled trace that this process starts, then the trace's tree as the
        receiver got it from every process (the time each hop took): the owner's web and database,
        its change stream, the broker, the production service's consumer and outbox, its relay and
        the status consumer that applies production.order.started to the order's owner."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        from ops import trace_store

        data = traffic_data_load(staff_token=staff_token, api_keys=[], sample=20)
        provider = TracerProvider(
            resource=Resource.create({"service.name": "demo", "process.role": "customer"})
        )
        endpoint = stack.env["OTEL_EXPORTER_OTLP_ENDPOINT"] + "/v1/traces"
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        tracer = provider.get_tracer(__name__)
        product = data.products[0]
        staff = {"Authorization": f"Token {staff_token}"}
        for attempt in range(3):
            with tracer.start_as_current_span("demo: place and confirm one order") as root:
                trace_id = f"{root.get_span_context().trace_id:032x}"
                placed = self._call(
                    stack.proxy_url + "/shop/api/orders/",
                    {"Authorization": f"Bearer {data.customer_tokens[0]}"},
                    {"lines": [{"sku": product.sku, "quantity": 2, "options": list(product.options[:1])}]},
                )
                public_id = str(placed["id"])
                root.set_attribute("order.public_id", public_id)
                listed = self._call(stack.proxy_url + "/crm/api/orders/?status=placed&limit=200", staff)
                order_id = next(
                    (o["id"] for o in listed["results"] if str(o.get("public_id")) == public_id), None
                )
                try:
                    if order_id is None:
                        raise OrderTaken(f"order {public_id} was no longer placed when staff listed them")
                    self._call(
                        stack.proxy_url + f"/crm/api/orders/{order_id}/confirm/",
                        staff,
                        {},
                        done_if_retried=INVALID_TRANSITION,
                    )
                    break
                except OrderTaken as exc:
                    # The traffic's staff confirm placed orders too, and may take this one first.
                    if attempt == 2:
                        raise StoryFailed(f"{exc} (three orders in a row)") from exc
                    self.say(f"{exc}: the traffic's staff confirmed it first; placing another")
        provider.shutdown()
        self.say(f"order {public_id} placed and confirmed inside trace {trace_id}")
        status_group = STATUS_GROUPS[self.orders_owner]
        spans, reached = self._trace_spans(trace_id, status_group, seconds=seconds)
        if not reached:
            self.say(
                f"the trace did not reach the status consumer ({status_group}) within {seconds:.0f} s: "
                f"its tree so far is below; see {LOG_DIR / (status_group + '.log')} and the relays' logs"
            )
        lines = trace_store.render_tree(trace_store.trace_tree(spans, trace_id))
        again = f"manage.py observability traces show --file {SPAN_FILE} --trace-id {trace_id}"
        status = self._order_status(public_id)
        self.say(status)
        return [f"trace {trace_id}, {len(lines)} spans ({again})", *lines, status]

    def _trace_spans(
        self, trace_id: str, consumer_group: str, *, seconds: float
    ) -> tuple[list[dict[str, Any]], bool]:
        """The trace's spans once a span of `consumer_group` handling one of its events has arrived and
        no new span came in the last read (each process's batch exporter sends within about a
        second), or as they are after `seconds`; and whether that consumer's span came."""
        from ops import trace_store

        spans: list[dict[str, Any]] = []
        deadline, reached = time.monotonic() + seconds, False
        while time.monotonic() < deadline:
            seen = len(spans)
            spans = [s for s in trace_store.read_spans(SPAN_FILE) if s["trace_id"] == trace_id]
            reached = reached or any(
                span["kind"] == "consumer"
                and span["attributes"].get("messaging.consumer.group.name") == consumer_group
                for span in spans
            )
            if reached and len(spans) == seen:
                break
            time.sleep(1.5)
        return spans, reached

    def _order_status(self, public_id: str) -> str:
        """The order as its owner's database holds it (the status the production events set)."""
        alias = database_alias(PROCESSES[self.orders_owner].database)
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT status, production_stage FROM shop_order WHERE public_id = %s", [public_id]
            )
            row = cursor.fetchone()
        if row is None:
            return f"order {public_id}: not in the {self.orders_owner} database"
        status, stage = row
        return f"order {public_id} on the {self.orders_owner} side: {status}, production stage {stage or '-'}"

    def _call(
        self,
        url: str,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
        *,
        done_if_retried: str | None = None,
    ) -> Any:
        """A JSON request carrying the current span's traceparent, tried again on a 503 (a service
        that did not answer in time under load). A 503 does not say the work was not done: the CRM
        gives up on the shop after 2 s while the shop may still commit. So an answer with the error
        code `done_if_retried` to a retry means the earlier try went through (None is returned);
        the same answer to the first try raises OrderTaken (someone else did it first)."""
        from ops import tracing

        data = None if body is None else json.dumps(body).encode()
        for attempt in range(4):
            request = urllib.request.Request(
                url,
                data=data,
                method="GET" if body is None else "POST",
                headers={
                    **headers,
                    "Content-Type": "application/json",
                    "traceparent": tracing.current_traceparent(),
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=15) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                answer = exc.read()[:300]
                if done_if_retried and exc.code != 503 and error_code(answer) == done_if_retried:
                    if attempt == 0:
                        raise OrderTaken(f"{request.method} {url} answered {exc.code}: {answer!r}") from exc
                    self.say(f"{request.method} {url}: the try before the 503 had gone through")
                    return None
                if exc.code != 503 or attempt == 3:
                    raise StoryFailed(f"{request.method} {url} answered {exc.code}: {answer!r}") from exc
                self.say(f"{request.method} {url} answered 503 (busy); trying again")
                time.sleep(2)
        return None

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
