"""manage.py demo_monolith: run the legacy monolith with seed data, drive traffic, print what happened.

The story is the monolith's, so it lives with it; starting, watching and stopping the processes
is the toolkit's (ops.process_group), and so are the waits and the engine's own slot (harness)."""

import os
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from harness.engine_slot import engine_on_slot, engine_slot_drop, engine_slot_env
from harness.waiting import ProcessExited, WaitTimeout, port_open, wait_http_ok, wait_until
from legacy.processes import legacy_process_commands
from legacy.shop.models import Order, Product
from ops.process_group import (
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    manage_command,
)

ORCHESTRATIONS = ("polling", "events")
EVENT_TRANSPORTS = ("rabbitmq", "kafka")
# The demo's own replication slot, dropped when it ends: a slot left behind retains WAL.
DEMO_SLOT = "cdc_demo"


def _reachable(address: tuple[str, int]) -> bool:
    host, port = address
    return port_open(port, host=host, timeout=1)


def _amqp_address() -> tuple[str, int]:
    url = urlsplit(settings.AMQP_URL)
    return url.hostname or "127.0.0.1", url.port or 5672


def _kafka_address() -> tuple[str, int]:
    host, _, port = settings.CDC_KAFKA_BOOTSTRAP_SERVERS.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Run the legacy monolith as it runs today (granian web, Celery worker, Celery beat with the "
        "CRM's polling orchestrator), seed it when its database is empty, drive customer, staff and "
        "external-API traffic for a while, print the traffic summary and where the orders went, and "
        "stop every process it started, also on Ctrl-C. Logs of the processes: .local/demo-logs/. "
        "With --orchestration events the poller is replaced by the CDC engine (Debezium on the "
        "shared database) and the legacy-orchestration consumer, on a replication slot of the demo's "
        "own that it drops at the end. Without a reachable RabbitMQ the demo runs in events mode over "
        "Kafka (`python scripts/services.py kafka` starts Tansu, as `make demo` does) and Celery "
        "passes its tasks through files in .local/demo-celery/."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic (default 20)")
        parser.add_argument("--rate", type=float, default=25.0, help="requests per second (default 25)")
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000, else a free one)")
        parser.add_argument(
            "--orchestration",
            choices=ORCHESTRATIONS,
            help="how confirmed orders reach the MES (default: polling when RabbitMQ is reachable, "
            "else events)",
        )
        parser.add_argument(
            "--event-transport",
            choices=EVENT_TRANSPORTS,
            help="broker of the domain events in events mode (default: rabbitmq when reachable, "
            "else kafka at CDC_KAFKA_BOOTSTRAP_SERVERS)",
        )
        parser.add_argument(
            "--keep-running",
            action="store_true",
            help="after the traffic, keep the processes up until Ctrl-C (to try the shop in a browser)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["duration"] <= 0 or options["rate"] <= 0:
            raise CommandError("--duration and --rate must be positive.")
        rabbitmq = _reachable(_amqp_address())
        orchestration = options["orchestration"] or ("polling" if rabbitmq else "events")
        transport = options["event_transport"] or ("rabbitmq" if rabbitmq else "kafka")
        self._check_brokers(rabbitmq=rabbitmq, orchestration=orchestration, transport=transport)
        if not Product.objects.exists():
            self.stdout.write("The legacy database is empty: seeding a demo data set.")
            call_command("seed", stdout=self.stdout, stderr=self.stderr)
        port = free_port() if port_open(options["port"]) else options["port"]
        base_url = f"http://127.0.0.1:{port}"
        log_dir = PROJECT_ROOT / ".local" / "demo-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **database_env(settings.DATABASES),
            "SERVICE": "legacy",
            "CRM_POLL_INTERVAL_SECONDS": "2",
            "MES_STAGE_SECONDS": "1",
            "ORCHESTRATION_MODE": orchestration,
        }
        if not rabbitmq:
            env.update(self._celery_on_files())
        previous = signal.signal(signal.SIGTERM, _interrupt)
        before = self._status_counts()
        failure = None
        capture = None
        try:
            if orchestration == "events":
                capture = self._capture_setup(env, transport)
            with ProcessGroup() as group:
                self._start(group, port, env, log_dir, orchestration)
                wait_http_ok(f"{base_url}/healthz", seconds=30, process=group.processes[0].popen)
                self.stdout.write(
                    f"Legacy monolith up: {base_url}/shop/ (shop), {base_url}/crm/api/ (CRM), "
                    f"{base_url}/mes/api/ (MES), {base_url}/metrics"
                )
                if capture is not None:
                    self._events_start(group, env, log_dir, capture, transport)
                self.stdout.write(f"Traffic: {options['rate']:g} req/s for {options['duration']:g} s ...")
                failure = self._traffic(base_url, options)
                time.sleep(3)  # let the poll (or the events) and a stage or two run on the last confirmations
                self._report(before)
                if options["keep_running"] and failure is None:
                    self.stdout.write("Processes keep running; Ctrl-C stops them.")
                    while all(p.alive() for p in group.processes):
                        time.sleep(0.5)
        except KeyboardInterrupt:
            self.stdout.write("Interrupted: stopping every process the demo started.")
            return
        finally:
            signal.signal(signal.SIGTERM, previous)
            if capture is not None:
                self._capture_teardown(capture)
        self.stdout.write("All demo processes stopped.")
        if failure is not None:
            raise CommandError(f"Traffic saw unexpected errors: {failure}. See .local/demo-logs/.")

    def _check_brokers(self, *, rabbitmq: bool, orchestration: str, transport: str) -> None:
        host, port = _amqp_address()
        if not rabbitmq:
            self.stdout.write(f"RabbitMQ is not reachable at {host}:{port}.")
        if orchestration == "polling":
            return  # no event broker needed; without RabbitMQ, Celery goes through files
        if transport == "rabbitmq" and not rabbitmq:
            raise CommandError(
                f"--event-transport rabbitmq needs RabbitMQ at {host}:{port}; start it or use "
                "--event-transport kafka."
            )
        if transport == "kafka" and not _reachable(_kafka_address()):
            kafka = settings.CDC_KAFKA_BOOTSTRAP_SERVERS
            raise CommandError(
                f"No Kafka broker at {kafka}: start the embedded one with `python scripts/services.py "
                "kafka` (`make demo` does when RabbitMQ is absent) or set CDC_KAFKA_BOOTSTRAP_SERVERS."
            )

    def _celery_on_files(self) -> dict[str, str]:
        folder = PROJECT_ROOT / ".local" / "demo-celery"
        for sub in ("queues", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.stdout.write("Celery tasks go through files in .local/demo-celery/ instead.")
        return {"CELERY_BROKER_URL": "filesystem://", "CELERY_FILESYSTEM_DIR": str(folder)}

    def _capture_setup(self, env: dict[str, str], transport: str) -> Any:
        """The demo's publication and slot; from here on every confirmation has its event."""
        from cdc.captures import capture_engine_config, capture_load
        from cdc.replication import capture_setup

        config = engine_on_slot(
            capture_engine_config(capture_load(settings.CDC_DEFAULT_CAPTURE)),
            slot=f"{settings.DB_NAME_PREFIX}{DEMO_SLOT}",
        )
        capture_setup(config.target)
        env.update(
            {
                "CDC_TRANSPORT": transport,
                "CONSUMER_TRANSPORT": transport,
                **engine_slot_env(config),
                # Tansu lets a consumer join after about half the session timeout (docs/measurements.md).
                "CONSUMER_KAFKA_SESSION_TIMEOUT_MS": "6000",
            }
        )
        return config

    def _capture_teardown(self, config: Any) -> None:
        engine_slot_drop(config)
        self.stdout.write(f"Dropped the demo's replication slot {config.target.slot_name}.")

    def _start(
        self, group: ProcessGroup, port: int, env: dict[str, str], log_dir: Path, orchestration: str
    ) -> None:
        for name, command in legacy_process_commands(port=port, web_workers=2).items():
            if name == "beat" and orchestration == "events":
                continue  # no poller: the consumer sends confirmed orders
            group.start(ManagedProcess(name, command, env, log_dir / f"{name}.log"))

    def _events_start(
        self, group: ProcessGroup, env: dict[str, str], log_dir: Path, config: Any, transport: str
    ) -> None:
        """The consumer, then the engine; waits until both run, then sends what the poller left."""
        from cdc.replication import slot_status

        metrics_port = free_port()
        consumer = group.start(
            ManagedProcess(
                "consumer",
                manage_command("consume", "legacy-orchestration", "--metrics-port", str(metrics_port)),
                env,
                log_dir / "consumer.log",
            )
        )
        wait_http_ok(f"http://127.0.0.1:{metrics_port}/metrics", seconds=60, process=consumer.popen)
        engine = group.start(
            ManagedProcess(
                "cdc",
                manage_command("cdc", "run", "--no-setup"),
                {**env, "SERVICE": "cdc"},
                log_dir / "cdc.log",
            )
        )
        try:
            wait_until(
                lambda: slot_status(config.target).active,
                seconds=120,
                interval=0.5,
                what="the CDC engine attached to its slot",
                process=engine,
            )
        except (WaitTimeout, ProcessExited) as exc:
            raise CommandError(f"The CDC engine did not start; see {log_dir / 'cdc.log'}.") from exc
        self.stdout.write(
            f"Events mode: CDC engine on slot {config.target.slot_name} -> {transport} -> "
            "legacy-orchestration consumer (no poller)."
        )
        sweep = subprocess.run(
            manage_command("send_confirmed_to_mes"),
            env={**os.environ, **env},
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if sweep.returncode != 0:
            raise CommandError(f"Sending the confirmed backlog to the MES failed: {sweep.stderr[-500:]}")
        self.stdout.write(f"Hand-over: {sweep.stdout.strip()} (confirmed before the slot existed).")

    def _traffic(self, base_url: str, options: dict[str, Any]) -> str | None:
        try:
            call_command(
                "traffic",
                base_url=base_url,
                rate=options["rate"],
                duration=options["duration"],
                stdout=self.stdout,
                stderr=self.stderr,
            )
        except (CommandError, SystemExit) as exc:
            return str(exc) or "non-zero exit"
        return None

    def _status_counts(self) -> dict[str, int]:
        rows = Order.objects.values("status").annotate(n=Count("id"))
        return {row["status"]: row["n"] for row in rows}

    def _report(self, before: dict[str, int]) -> None:
        after = self._status_counts()
        self.stdout.write("Orders by status (before -> after the demo):")
        for status in ("placed", "confirmed", "cancelled", "in_production", "done"):
            self.stdout.write(f"  {status:<14} {before.get(status, 0):>7} -> {after.get(status, 0):>7}")
