"""manage.py demo: run the legacy monolith with seed data, drive traffic, print what happened."""

import signal
import socket
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from legacy.shop.models import Order, Product
from ops.process_group import (
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    database_env,
    free_port,
    legacy_process_commands,
    wait_http_ok,
)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Run the legacy monolith as it runs today (granian web, Celery worker, Celery beat with the "
        "CRM's polling orchestrator), seed it when its database is empty, drive customer, staff and "
        "external-API traffic for a while, print the traffic summary and where the orders went, and "
        "stop every process it started, also on Ctrl-C. Logs of the processes: .local/demo-logs/."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--duration", type=float, default=20.0, help="seconds of traffic (default 20)")
        parser.add_argument("--rate", type=float, default=25.0, help="requests per second (default 25)")
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000, else a free one)")
        parser.add_argument(
            "--keep-running",
            action="store_true",
            help="after the traffic, keep the processes up until Ctrl-C (to try the shop in a browser)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["duration"] <= 0 or options["rate"] <= 0:
            raise CommandError("--duration and --rate must be positive.")
        if not Product.objects.exists():
            self.stdout.write("The legacy database is empty: seeding a demo data set.")
            call_command("seed", stdout=self.stdout, stderr=self.stderr)
        port = options["port"] if _port_free(options["port"]) else free_port()
        base_url = f"http://127.0.0.1:{port}"
        log_dir = PROJECT_ROOT / ".local" / "demo-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **database_env(settings.DATABASES),
            "SERVICE": "legacy",
            "CRM_POLL_INTERVAL_SECONDS": "2",
            "MES_STAGE_SECONDS": "1",
        }
        previous = signal.signal(signal.SIGTERM, _interrupt)
        before = self._status_counts()
        try:
            with ProcessGroup() as group:
                self._start(group, port, env, log_dir)
                wait_http_ok(f"{base_url}/healthz", seconds=30, process=group.processes[0].popen)
                self.stdout.write(
                    f"Legacy monolith up: {base_url}/shop/ (shop), {base_url}/crm/api/ (CRM), "
                    f"{base_url}/mes/api/ (MES), {base_url}/metrics"
                )
                self.stdout.write(f"Traffic: {options['rate']:g} req/s for {options['duration']:g} s ...")
                failure = self._traffic(base_url, options)
                time.sleep(3)  # let the poll and a stage or two run on the last confirmations
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
        self.stdout.write("All demo processes stopped.")
        if failure is not None:
            raise CommandError(f"Traffic saw unexpected errors: {failure}. See .local/demo-logs/.")

    def _start(self, group: ProcessGroup, port: int, env: dict[str, str], log_dir: Path) -> None:
        for name, command in legacy_process_commands(port=port, web_workers=2).items():
            group.start(ManagedProcess(name, command, env, log_dir / f"{name}.log"))

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
