"""manage.py cdc run | setup | status | teardown | dead-letters: a capture's engine, its replication
slot, and the changes it could not translate."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from typing import Any

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdc.captures import (
    UnknownCapture,
    capture_engine_config,
    capture_load,
    capture_translate,
    outbox_engine_config,
    outbox_translate,
    record_translate_for,
)
from cdc.dead_letters import (
    POISON_ERRORS,
    DeadLetterNotFound,
    dead_letter_get,
    dead_letter_replay,
    dead_letters_pending_count,
    dead_letters_select,
)
from cdc.engine import EngineConfig, EngineSupervisor, offsets_reset, publishing_handler_factory
from cdc.models import CaptureDeadLetter, EngineState
from cdc.records import RecordTranslate
from cdc.replication import capture_setup, capture_teardown, slot_check
from cdc.transports import PublishError, publisher_from_settings

logger = structlog.get_logger(__name__)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value} bytes ({value / 1024 / 1024:.1f} MiB)"


class Command(BaseCommand):
    help = (
        "Change data capture. `run` streams a registered capture (CDC_CAPTURES; default "
        "CDC_DEFAULT_CAPTURE) or, with --outbox, one outbox table through "
        "Debezium to the broker chosen by CDC_TRANSPORT; `setup` creates the publication and "
        "replication slot; `status` shows the slot's lag and the last event; `teardown --yes` drops "
        "the slot and publication (`--dry-run` shows what it would do); `dead-letters` lists, shows "
        "and replays the changes that could not be translated. Run `setup` before the first `run`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="{run,setup,status,teardown,dead-letters}"
        )
        self._add_dead_letter_arguments(actions)
        for name, text in (
            ("run", "run the engine until SIGTERM/SIGINT, restarting it after failures"),
            ("setup", "create the publication, replica identities and slot (idempotent)"),
            ("status", "slot lag in bytes and time, retained WAL, the last event published"),
            ("teardown", "drop the slot and the publication (asks for --yes)"),
        ):
            sub = actions.add_parser(name, help=text, description=text)
            sub.add_argument(
                "--capture",
                help="a capture registered in CDC_CAPTURES (default: CDC_DEFAULT_CAPTURE)",
            )
            sub.add_argument(
                "--outbox", action="store_true", help="the outbox relay instead of a registered capture"
            )
            sub.add_argument(
                "--database",
                help="with --outbox: logical database of the outbox table (a key of DATABASE_NAMES)",
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

    def _add_dead_letter_arguments(self, actions: Any) -> None:
        text = "changes the engine could not translate: list, show <id>, replay <id> | --all"
        letters = actions.add_parser("dead-letters", help=text, description=text)
        letter_actions = letters.add_subparsers(dest="letter_action", required=True)
        listing = letter_actions.add_parser("list", help="the dead letters, oldest first")
        listing.add_argument("--capture", help="only this capture's letters")
        listing.add_argument("--pending", action="store_true", help="only letters not replayed yet")
        show = letter_actions.add_parser("show", help="one letter with its raw change and error")
        show.add_argument("letter_id", type=int)
        replay = letter_actions.add_parser(
            "replay",
            help="translate again with the current code and publish; the letter is marked, not deleted",
        )
        replay.add_argument("letter_id", type=int, nargs="?")
        replay.add_argument("--all", action="store_true", help="every letter not replayed yet")
        replay.add_argument("--capture", help="with --all: only this capture's letters")
        replay.add_argument(
            "--dry-run", action="store_true", help="print the events it would publish, publish nothing"
        )

    def _config(self, options: dict[str, Any]) -> tuple[EngineConfig, RecordTranslate]:
        """The engine the options select and the translation of its records."""
        if not options["outbox"]:
            if options["database"] or options["table"]:
                raise CommandError("--database and --table select an outbox table; add --outbox.")
            name = options["capture"] or settings.CDC_DEFAULT_CAPTURE
            try:
                capture = capture_load(name)
            except UnknownCapture as exc:
                raise CommandError(f"{exc}. Register it in CDC_CAPTURES or pick another --capture.") from exc
            return capture_engine_config(capture), capture_translate(capture)
        if options["capture"]:
            raise CommandError("--capture names a registered capture; leave it out with --outbox.")
        if not options["database"] or not options["table"]:
            raise CommandError(
                "--outbox needs --database (e.g. production) and --table (e.g. production_outbox)."
            )
        try:
            config = outbox_engine_config(database=options["database"], table=options["table"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return config, outbox_translate(database=options["database"], table=options["table"])

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "dead-letters":
            self._dead_letters(options)
            return
        config, translate = self._config(options)
        if action == "setup":
            self._setup(config)
        elif action == "status":
            self._status(config)
        elif action == "teardown":
            self._teardown(config, yes=options["yes"], dry_run=options["dry_run"])
        else:
            self._run(config, translate, no_setup=options["no_setup"])

    def _setup(self, config: EngineConfig, *, as_log: bool = False) -> None:
        """`cdc setup` prints what it did for the operator; `cdc run`, a long-running process whose
        every line is JSON, logs it."""
        try:
            done = capture_setup(config.target)
        except Exception as exc:
            raise CommandError(
                f"Could not set up capture on database {config.target.database_alias!r} ({exc}). "
                "Check that PostgreSQL runs with wal_level=logical and the user may replicate."
            ) from exc
        for line in done or ["publication and slot already in place"]:
            if as_log:
                logger.info("cdc.setup", engine=config.name, done=line)
            else:
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
        pending = dead_letters_pending_count(capture=config.capture_name)
        hint = " (`manage.py cdc dead-letters list`)" if pending else ""
        self.stdout.write(f"dead letters pending: {pending}{hint}")
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

    def _run(self, config: EngineConfig, translate: RecordTranslate, *, no_setup: bool) -> None:
        if not no_setup:
            self._setup(config, as_log=True)
        if settings.METRICS_PORT:
            from prometheus_client import start_http_server

            start_http_server(settings.METRICS_PORT)
        supervisor = EngineSupervisor(
            config=config,
            handler_factory=publishing_handler_factory(
                config, translate=translate, publisher_factory=publisher_from_settings
            ),
        )

        def stop(signum: int, frame: Any) -> None:
            supervisor.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info(
            "cdc.run", engine=config.name, slot=config.target.slot_name, transport=settings.CDC_TRANSPORT
        )
        supervisor.run_forever()

    def _dead_letters(self, options: dict[str, Any]) -> None:
        action = options["letter_action"]
        if action == "list":
            self._letters_list(
                dead_letters_select(capture=options["capture"], pending_only=options["pending"])
            )
        elif action == "show":
            self._letter_show(self._letter(options["letter_id"]))
        else:
            self._letters_replay(options)

    def _letter(self, letter_id: int) -> CaptureDeadLetter:
        try:
            return dead_letter_get(letter_id=letter_id)
        except DeadLetterNotFound as exc:
            raise CommandError(f"{exc}; `manage.py cdc dead-letters list` shows the ids.") from exc

    def _letters_list(self, letters: list[CaptureDeadLetter]) -> None:
        if not letters:
            self.stdout.write("no dead letters")
            return
        for letter in letters:
            state = f"replayed {letter.replayed_at.isoformat()}" if letter.replayed_at else "pending"
            self.stdout.write(
                f"{letter.id}  {letter.created_at.isoformat()}  {letter.capture}  {letter.reason}  "
                f"{letter.record.get('destination', '')}  {letter.position}  {state}  "
                f"{letter.error_type}: {letter.error[:120]}"
            )

    def _letter_show(self, letter: CaptureDeadLetter) -> None:
        self.stdout.write(f"dead letter {letter.id}")
        self.stdout.write(f"capture: {letter.capture} (engine {letter.engine})")
        self.stdout.write(f"position: {letter.position or '-'}")
        self.stdout.write(f"stored: {letter.created_at.isoformat()}")
        self.stdout.write(f"reason: {letter.reason}")
        self.stdout.write(f"error: {letter.error_type}: {letter.error}")
        replayed = (
            f"{letter.replayed_at.isoformat()} ({letter.replay_count}x), events {letter.replayed_event_ids}"
            if letter.replayed_at
            else "no"
        )
        self.stdout.write(f"replayed: {replayed}")
        self.stdout.write("record:")
        self.stdout.write(json.dumps(letter.record, indent=2, sort_keys=True))

    def _letters_replay(self, options: dict[str, Any]) -> None:
        if options["all"] == (options["letter_id"] is not None):
            raise CommandError("Name one letter id, or --all for every letter not replayed yet.")
        if options["all"]:
            letters = dead_letters_select(capture=options["capture"], pending_only=True)
        else:
            letters = [self._letter(options["letter_id"])]
        dry_run = options["dry_run"]
        publisher = None if dry_run else publisher_from_settings()
        translations: dict[str, RecordTranslate] = {}
        failed = 0
        try:
            for letter in letters:
                if letter.capture not in translations:
                    try:
                        translations[letter.capture] = record_translate_for(letter.capture)
                    except UnknownCapture as exc:
                        raise CommandError(f"{exc}; letter {letter.id} cannot be replayed.") from exc
                try:
                    outcome = dead_letter_replay(
                        letter_id=letter.id,
                        translate=translations[letter.capture],
                        publisher=publisher,
                        at=datetime.now(UTC),
                    )
                except POISON_ERRORS as exc:
                    failed += 1
                    self.stderr.write(
                        f"letter {letter.id} still fails: {type(exc).__name__}: {exc} (left as it is)"
                    )
                    continue
                types = ", ".join(f"{e['type']} {e['subject']}" for e in outcome.events) or "no events"
                verb = "would publish" if dry_run else "published"
                self.stdout.write(f"letter {letter.id}: {verb} {types}")
        except PublishError as exc:
            raise CommandError(
                f"The broker did not confirm the replayed events ({exc}); run it again."
            ) from exc
        finally:
            if publisher is not None:
                publisher.close()
        if not letters:
            self.stdout.write("no dead letters to replay")
        if failed:
            raise CommandError(f"{failed} of {len(letters)} letters still fail; fix the translation first.")
