"""manage.py cdc run | setup | status | teardown: the CDC engine and its replication slot."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdc.captures import legacy_engine_config, legacy_translator, outbox_engine_config, outbox_translator
from cdc.engine import EngineConfig, EngineSupervisor, Translate, offsets_reset
from cdc.models import EngineState
from cdc.replication import capture_setup, capture_teardown, slot_check
from cdc.transports import publisher_from_settings


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value} bytes ({value / 1024 / 1024:.1f} MiB)"


class Command(BaseCommand):
    help = (
        "Change data capture. `run` streams the legacy order tables (or, with --outbox, one outbox "
        "table) through Debezium to the broker chosen by CDC_TRANSPORT; `setup` creates the "
        "publication and replication slot; `status` shows the slot's lag and the last event; "
        "`teardown --yes` drops the slot and publication (`--dry-run` shows what it would do). "
        "Run `setup` before the first `run`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{run,setup,status,teardown}")
        for name, text in (
            ("run", "run the engine until SIGTERM/SIGINT, restarting it after failures"),
            ("setup", "create the publication, replica identities and slot (idempotent)"),
            ("status", "slot lag in bytes and time, retained WAL, the last event published"),
            ("teardown", "drop the slot and the publication (asks for --yes)"),
        ):
            sub = actions.add_parser(name, help=text, description=text)
            sub.add_argument(
                "--outbox", action="store_true", help="the outbox relay instead of the legacy tables"
            )
            sub.add_argument(
                "--database", help="with --outbox: logical database of the outbox table (shop, crm, ...)"
            )
            sub.add_argument("--table", help="with --outbox: the outbox table's name")
            if name == "run":
                sub.add_argument(
                    "--no-setup", action="store_true", help="do not create a missing slot/publication"
                )
            if name == "teardown":
                sub.add_argument(
                    "--yes", action="store_true", help="really drop the slot (its position is lost)"
                )
                sub.add_argument("--dry-run", action="store_true", help="only print what would be dropped")

    def _config(self, options: dict[str, Any]) -> tuple[EngineConfig, Translate | None]:
        if not options["outbox"]:
            if options["database"] or options["table"]:
                raise CommandError("--database and --table select an outbox table; add --outbox.")
            return legacy_engine_config(), None
        if not options["database"] or not options["table"]:
            raise CommandError(
                "--outbox needs --database (e.g. production) and --table (e.g. production_outbox)."
            )
        try:
            config = outbox_engine_config(database=options["database"], table=options["table"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return config, None

    def handle(self, *args: Any, **options: Any) -> None:
        config, _ = self._config(options)
        action = options["action"]
        if action == "setup":
            self._setup(config)
        elif action == "status":
            self._status(config)
        elif action == "teardown":
            self._teardown(config, yes=options["yes"], dry_run=options["dry_run"])
        else:
            self._run(config, options)

    def _setup(self, config: EngineConfig) -> None:
        try:
            done = capture_setup(config.target)
        except Exception as exc:
            raise CommandError(
                f"Could not set up capture on database {config.target.database_alias!r} ({exc}). "
                "Check that PostgreSQL runs with wal_level=logical and the user may replicate."
            ) from exc
        for line in done or ["publication and slot already in place"]:
            self.stdout.write(line)

    def _status(self, config: EngineConfig) -> None:
        status = slot_check(config.target, max_retained_bytes=settings.CDC_MAX_RETAINED_WAL_BYTES)
        self.stdout.write(f"engine: {config.name}")
        self.stdout.write(
            f"slot: {status.slot_name} ({'exists' if status.exists else 'MISSING: run `cdc setup`'})"
        )
        if status.exists:
            self.stdout.write(f"active: {'yes' if status.active else 'no (no engine connected)'}")
            self.stdout.write(f"lag: {_mib(status.lag_bytes)}")
            lag_time = (
                "- (caught up, or no engine connected)"
                if status.flush_lag_seconds is None
                else f"{status.flush_lag_seconds:.3f} s"
            )
            self.stdout.write(f"flush lag: {lag_time}")
            retained = _mib(status.retained_wal_bytes)
            bound = settings.CDC_MAX_RETAINED_WAL_BYTES
            alert = (
                "  ALERT: above CDC_MAX_RETAINED_WAL_BYTES"
                if (status.retained_wal_bytes or 0) > bound
                else ""
            )
            self.stdout.write(f"retained WAL: {retained} (bound {bound}){alert}")
        self.stdout.write(f"publication tables: {', '.join(status.publication_tables) or '-'}")
        state = EngineState.objects.filter(name=config.name).first()
        if state is None or not state.last_event_id:
            self.stdout.write("last event: none published yet")
            return
        now = datetime.now(UTC)
        self.stdout.write(
            f"last event: {state.last_event_type} {state.last_event_subject} id={state.last_event_id} "
            f"position {state.last_position}"
        )
        if state.last_committed_at and state.last_published_at:
            delay = (state.last_published_at - state.last_committed_at).total_seconds()
            age = (now - state.last_published_at).total_seconds()
            self.stdout.write(
                f"last event committed {state.last_committed_at.isoformat()}, published {delay:.3f} s "
                f"later, {age:.1f} s ago"
            )
        self.stdout.write(f"events published: {state.events_published}; engine restarts: {state.restarts}")

    def _teardown(self, config: EngineConfig, *, yes: bool, dry_run: bool) -> None:
        if not yes and not dry_run:
            raise CommandError(
                f"Dropping slot {config.target.slot_name} loses the engine's position: changes made "
                "until a new slot exists are never published. "
                "Re-run with --yes (or --dry-run to see the plan)."
            )
        actions = capture_teardown(config.target, dry_run=dry_run)
        actions += offsets_reset(config, dry_run=dry_run)
        prefix = "would " if dry_run else ""
        for line in actions or ["nothing to drop"]:
            self.stdout.write(f"{prefix}{line}")

    def _run(self, config: EngineConfig, options: dict[str, Any]) -> None:
        if not options["no_setup"]:
            self._setup(config)
        translate = (
            outbox_translator(database=options["database"], table=options["table"])
            if options["outbox"]
            else legacy_translator()
        )
        if settings.METRICS_PORT:
            from prometheus_client import start_http_server

            start_http_server(settings.METRICS_PORT)
        supervisor = EngineSupervisor(
            config=config, translate=translate, publisher_factory=publisher_from_settings
        )

        def stop(signum: int, frame: Any) -> None:
            supervisor.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(
            f"cdc engine {config.name}: slot {config.target.slot_name} -> {settings.CDC_TRANSPORT}"
        )
        supervisor.run_forever()
        self.stdout.write(f"cdc engine {config.name} stopped")
