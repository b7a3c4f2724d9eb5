"""manage.py demo: the migration story (legacy/migration_demo.py) on a fresh machine, then its summary."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from legacy.migration_demo import LOG_DIR, SLICES, MigrationStory, Stack, StoryFailed
from legacy.shop.models import Product
from legacy.traffic.credentials import traffic_staff_token_ensure
from ops.process_group import ManagedProcess, ProcessGroup, manage_command

PHASES = ("syncing", "shadow", "canary", "live")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "The migration, shown: the monolith (web, Celery worker, its change stream) with the shop, CRM, "
        "pricing and production services beside it and the strangler proxy in front, customer, staff "
        "and partner traffic running through the proxy the whole time; the shop's catalogue and orders "
        "slices, the CRM's slice and the MES pricing slice (quotes, shadowed and compared) go legacy -> "
        "syncing (backfill, sync, verify) -> shadow -> canary (50%, 100%) -> live (a cutover under a bounded "
        "write freeze each), then the catalogue is rolled back from live and cut over again, and the "
        "deprecated production-order read shows its Deprecation, Sunset and Link headers. Every process "
        "sends its spans to a trace receiver the demo starts, and the story ends with the trace tree of "
        "one order placed and confirmed through the proxy, from the customer's request through the "
        "shop service, its outbox relay, the broker and the production service to the consumer that "
        "applies its production status to the shop. "
        "Ends with a summary (time in each phase, freezes, rows copied and verified, requests served by "
        "each side, customer-visible errors) and stops every process it started, also on Ctrl-C. Each "
        "step is printed as the operator command it runs. Logs: .local/demo-logs/. "
        "`manage.py demo_monolith` runs the monolith alone, as it runs today."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rate", type=float, default=10.0, help="traffic in requests per second (default 10)"
        )
        parser.add_argument("--json", action="store_true", help="end with the summary as one JSON line")
        parser.add_argument(
            "--end-in-legacy",
            action="store_true",
            help="after the story, roll every slice back to legacy (the monolith owns everything again, "
            "with every write made on the new side)",
        )
        parser.add_argument(
            "--reset-only",
            action="store_true",
            help="only undo what a previous run left (every slice rolled back to legacy with its sync "
            "running, the new databases emptied), as each run does before its story, then stop",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rate"] <= 0:
            raise CommandError("--rate must be positive.")
        if not Product.objects.exists():
            self.stdout.write("The legacy database is empty: seeding a demo data set.")
            call_command("seed", stdout=self.stdout, stderr=self.stderr)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        story = MigrationStory(out=self.stdout, rate=options["rate"])
        previous = signal.signal(signal.SIGTERM, _interrupt)
        traffic: ManagedProcess | None = None
        try:
            with ProcessGroup() as group:
                api_key = self._shop_api_key()
                stack = story.start(group, api_key)
                story.reset(group, stack.env)
                if options["reset_only"]:
                    story.say("Reset done: every slice is in legacy and the new databases are empty.")
                    return
                traffic = group.start(
                    ManagedProcess(
                        "traffic",
                        manage_command(
                            "traffic",
                            "--base-url",
                            stack.proxy_url,
                            "--rate",
                            str(options["rate"]),
                            "--duration",
                            "900",
                            "--signed-in-browsing",
                            "--json",
                        ),
                        # The load generator is not part of the system: it exports no spans.
                        {**stack.env, "SERVICE": "legacy", "OTEL_SDK_DISABLED": "true"},
                        LOG_DIR / "traffic.log",
                    )
                )
                story.say(f"Traffic: {options['rate']:g} req/s through the proxy, for the whole story.")
                try:
                    story.run(group, stack)
                    deprecation = story.deprecation_headers(stack, api_key)
                    trace_tree = story.traced_order(stack, staff_token=traffic_staff_token_ensure())
                    if options["end_in_legacy"]:
                        story.back_to_legacy(group, stack.env)
                finally:
                    traffic_summary = self._traffic_stop(traffic)
                summary = self._summary(story, stack, traffic_summary)
                summary["deprecated_read"] = deprecation
                summary["one_order_trace"] = trace_tree
        except KeyboardInterrupt:
            self.stdout.write("Interrupted: stopping every process the demo started.")
            return
        except StoryFailed as exc:
            raise CommandError(f"{exc}\nLogs of the processes: {LOG_DIR}/") from exc
        finally:
            signal.signal(signal.SIGTERM, previous)
        self._print(summary)
        if options["json"]:
            self.stdout.write(json.dumps(summary, separators=(",", ":")))
        if summary["customer_visible_errors"]:
            samples = "".join(
                f"\n  {route}: {kind}: {detail}" for route, kind, detail in summary["error_samples"]
            )
            raise CommandError(
                f"{summary['customer_visible_errors']} requests failed as a customer would see it"
                f"{samples}\nsee {LOG_DIR / 'traffic.log'}."
            )

    def _shop_api_key(self) -> str:
        """A key for the shop service's calls to the MES quotes API (the monolith serves it today)."""
        from io import StringIO

        out = StringIO()
        name = f"shop-service-demo-{int(time.time())}"
        call_command("credentials", "api-key", "--name", name, stdout=out, stderr=StringIO())
        return out.getvalue().strip().splitlines()[-1]

    def _traffic_stop(self, traffic: ManagedProcess) -> dict[str, Any]:
        traffic.signal(signal.SIGINT)  # the generator stops sending and prints its summary
        for _ in range(300):
            if not traffic.alive():
                break
            time.sleep(0.1)
        lines = [line for line in traffic.log_tail(400).splitlines() if line.startswith("{")]
        for line in reversed(lines):
            try:
                found = json.loads(line)
            except ValueError:
                continue
            if isinstance(found, dict) and "requests" in found:
                return found
        raise StoryFailed(f"The traffic generator printed no summary; see {LOG_DIR / 'traffic.log'}.")

    def _served_by_backend(self, stack: Stack) -> dict[str, int]:
        with urllib.request.urlopen(f"{stack.proxy_url}/_strangler/metrics", timeout=5) as response:
            text = response.read().decode()
        served: dict[str, int] = {}
        for match in re.finditer(r"^strangler_proxy_requests_total\{([^}]*)\} ([0-9.e+]+)$", text, re.M):
            backend = re.search(r'backend="([^"]*)"', match.group(1))
            if backend:
                served[backend.group(1)] = served.get(backend.group(1), 0) + int(float(match.group(2)))
        return served

    def _summary(self, story: MigrationStory, stack: Stack, traffic: dict[str, Any]) -> dict[str, Any]:
        phases: dict[str, dict[str, float]] = {}
        for name in SLICES:
            entered = story.figures.phase_entered.get(name, {})
            times = sorted(entered.items(), key=lambda item: item[1])
            phases[name] = {
                phase: round(later - at, 1)
                for (phase, at), (_, later) in zip(
                    times, [*times[1:], ("end", time.monotonic())], strict=True
                )
            }
        return {
            "seconds": round(time.monotonic() - story.started, 1),
            "seconds_in_phase": phases,
            "freezes_ms": [
                {"slice": name, "kind": kind, "ms": round(ms, 1)}
                for name, kind, ms in story.figures.freezes_ms
            ],
            "aborted_and_retried": story.figures.aborted,
            "rows_copied": story.figures.rows_copied,
            "rows_verified": story.figures.rows_verified,
            "shadow": story.figures.shadow,
            "requests_by_backend": self._served_by_backend(stack),
            "requests": traffic.get("requests", 0),
            "customer_visible_errors": traffic.get("errors", 0),
            "error_samples": traffic.get("error_samples", [])[:5],
        }

    def _print(self, summary: dict[str, Any]) -> None:
        self.stdout.write(f"\nSummary ({summary['seconds']} s)")
        self.stdout.write("  seconds in each phase:")
        for name, phases in summary["seconds_in_phase"].items():
            shown = ", ".join(f"{phase} {seconds:g}" for phase, seconds in phases.items())
            self.stdout.write(f"    {name:<12} {shown}")
        self.stdout.write(
            "  write freezes: "
            + ", ".join(f"{f['slice']} {f['kind']} {f['ms']:.0f} ms" for f in summary["freezes_ms"])
        )
        self.stdout.write(f"  rows copied: {summary['rows_copied']}")
        self.stdout.write(f"  rows verified equal: {summary['rows_verified']}")
        for name, routes in summary["shadow"].items():
            shown = ", ".join(f"{route} {n['differing']}/{n['compared']}" for route, n in routes.items())
            self.stdout.write(f"  shadow of {name} (differing/compared): {shown or 'none'}")
        deprecated = summary.get("deprecated_read", {})
        if deprecated:
            self.stdout.write(
                f"  deprecated production-order read: Deprecation {deprecated['Deprecation']}, "
                f"Sunset {deprecated['Sunset']}, Link {deprecated['Link']}"
            )
        self.stdout.write(f"  requests served by each side (proxy): {summary['requests_by_backend']}")
        self.stdout.write(
            f"  customer-visible errors: {summary['customer_visible_errors']} "
            f"of {summary['requests']} requests"
        )
        if settings.DB_NAME_PREFIX:
            self.stdout.write(f"  (databases prefixed {settings.DB_NAME_PREFIX})")
        trace = summary.get("one_order_trace") or []
        if trace:
            self.stdout.write(
                "\nOne order, end to end (offset from the start, time spent, span [service/process]):"
            )
            self.stdout.write(f"  {trace[0]}")
            for line in trace[1:]:
                self.stdout.write(f"  {line}")
