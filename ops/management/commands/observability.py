"""manage.py observability: the trace receiver and trace trees, the Prometheus scrape configuration,
the alert rules and the dashboards."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from ops import alert_rules, dashboards, prometheus_config, trace_store

DEFAULT_SPAN_FILE = Path(".local/traces/spans.jsonl")
DEFAULT_ALERT_RULES = Path("observability/prometheus/alerts.yml")
# The bounds come from the plan and the Slice model's defaults: the data-migration toolkit's process
# loads the apps that read them (this command otherwise runs as the default SERVICE, which does not).
ALERT_BOUNDS_APP = "migrations"
ALERT_BOUNDS_SERVICE = "migrations"


def _rerun_as(service: str) -> None:
    """Runs this same command line again as SERVICE=`service` (one command for the operator)."""
    if os.environ.get("SERVICE") == service:
        raise CommandError(f"SERVICE={service} does not load the {ALERT_BOUNDS_APP} app.")
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "SERVICE": service})


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = (
        "Observability tools. `traces receive` runs an OTLP/HTTP endpoint that appends every span it "
        "gets to a JSON-lines file (point processes at it with "
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318); `traces show` prints one trace as a tree "
        "with the time spent in each hop."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        tools = parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
        traces = tools.add_parser("traces", help="receive spans over OTLP/HTTP; print a trace's tree")
        what = traces.add_subparsers(dest="action", required=True, metavar="ACTION")
        receive = what.add_parser("receive", help="serve POST /v1/traces and store each span")
        receive.add_argument("--host", default="127.0.0.1")
        receive.add_argument("--port", type=int, default=4318, help="OTLP/HTTP's usual port (default 4318)")
        receive.add_argument("--file", type=Path, default=DEFAULT_SPAN_FILE, help="spans, one JSON per line")
        show = what.add_parser("show", help="print one trace as a tree")
        show.add_argument("--file", type=Path, default=DEFAULT_SPAN_FILE)
        pick = show.add_mutually_exclusive_group(required=True)
        pick.add_argument("--trace-id", help="32 hex digits")
        pick.add_argument(
            "--where",
            metavar="ATTRIBUTE=VALUE",
            help="the first trace holding a span with this attribute value (e.g. order.id=42)",
        )
        prometheus = tools.add_parser(
            "prometheus-config",
            help="print a prometheus.yml scraping every process (PROMETHEUS_SCRAPE_TARGETS)",
        )
        prometheus.add_argument(
            "--target",
            action="append",
            default=[],
            metavar="JOB=HOST:PORT[/PATH]",
            help="scrape JOB at this address instead (repeat for several targets or jobs)",
        )
        prometheus.add_argument(
            "--job", action="append", default=[], metavar="JOB", help="only these jobs (repeatable)"
        )
        prometheus.add_argument("--scrape-interval", default="15s")
        prometheus.add_argument("--rule-file", action="append", default=[], type=Path, metavar="PATH")
        prometheus.add_argument("--output", type=Path, help="write here instead of stdout")

        alerts = tools.add_parser(
            "alerts", help="write the Prometheus alert rules rendered from the plan and settings"
        )
        alerts.add_argument("--output", type=Path, default=DEFAULT_ALERT_RULES)
        alerts.add_argument(
            "--check", action="store_true", help="fail if the file differs from what would be written"
        )
        boards = tools.add_parser("dashboards", help="write the Grafana dashboards' JSON")
        boards.add_argument("--output-dir", type=Path, default=dashboards.DEFAULT_DIRECTORY)
        boards.add_argument(
            "--check", action="store_true", help="fail if a file differs from what would be written"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["tool"] == "alerts":
            if not apps.is_installed(ALERT_BOUNDS_APP):
                _rerun_as(ALERT_BOUNDS_SERVICE)
            bounds = import_string(settings.OBSERVABILITY_ALERT_BOUNDS)()
            self._write({options["output"]: alert_rules.rules_render(bounds)}, check=options["check"])
        elif options["tool"] == "dashboards":
            rendered = dashboards.dashboards_render()
            self._write(
                {options["output_dir"] / name: text for name, text in rendered.items()},
                check=options["check"],
            )
        elif options["tool"] == "traces" and options["action"] == "receive":
            self._receive(options)
        elif options["tool"] == "traces" and options["action"] == "show":
            self._show(options)
        elif options["tool"] == "prometheus-config":
            self._prometheus_config(options)

    def _prometheus_config(self, options: dict[str, Any]) -> None:
        try:
            jobs = prometheus_config.scrape_jobs(
                settings.PROMETHEUS_SCRAPE_TARGETS, overrides=options["target"], only=options["job"]
            )
            text = prometheus_config.prometheus_config_render(
                jobs, scrape_interval=options["scrape_interval"], rule_files=options["rule_file"]
            )
        except prometheus_config.ScrapeConfigError as exc:
            raise CommandError(str(exc)) from exc
        if options["output"]:
            options["output"].write_text(text)
            self.stdout.write(f"wrote {options['output']}: {len(jobs)} jobs")
        else:
            self.stdout.write(text, ending="")

    def _write(self, files: dict[Path, str], *, check: bool) -> None:
        stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
        if check:
            if stale:
                raise CommandError(
                    f"Out of date: {', '.join(map(str, stale))}. Regenerate with the same command without "
                    "--check."
                )
            self.stdout.write(f"up to date: {', '.join(map(str, files))}")
            return
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.stdout.write(f"wrote {', '.join(map(str, files))} ({len(stale)} changed)")

    def _receive(self, options: dict[str, Any]) -> None:
        store = trace_store.SpanFile(options["file"])
        try:
            server = trace_store.make_server(options["host"], options["port"], store)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {exc}.") from exc
        signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: close the file cleanly
        self.stdout.write(
            f"receiving OTLP/HTTP spans on http://{options['host']}:{options['port']}/v1/traces "
            f"into {options['file']}"
        )
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
            store.close()

    def _show(self, options: dict[str, Any]) -> None:
        spans = trace_store.read_spans(options["file"])
        trace_id = options["trace_id"]
        if options["where"]:
            attribute, _, value = options["where"].partition("=")
            found = trace_store.trace_ids_with(spans, attribute, value)
            if not found:
                raise CommandError(f"No span in {options['file']} has {attribute} = {value!r}.")
            trace_id = found[0]
        lines = trace_store.render_tree(trace_store.trace_tree(spans, trace_id.lower()))
        if not lines:
            raise CommandError(f"No span of trace {trace_id} in {options['file']}.")
        self.stdout.write(f"trace {trace_id}: {len(lines)} spans (offset from start, duration, span)")
        for line in lines:
            self.stdout.write(line)
