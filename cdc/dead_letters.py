"""Dead letters of the CDC engines: a change that cannot be translated, or whose events fail their
schema, is stored with its raw record and the reason instead of stopping the stream; a person
replays it once the code (or its registration) is fixed.

What is a poison change and what is not: translation and schema errors are properties of the
change and of the code, so retrying cannot help and would stall every later change. A broker or
database failure is not: it passes up and the engine retries the whole batch (nothing is lost).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from django.db import transaction

from cdc import metrics
from cdc.cloudevents import stable_event_id
from cdc.event_schemas import EventSchemaError, ValidatedEvents, events_validated
from cdc.models import CaptureDeadLetter
from cdc.records import CapturedRecord, RecordTranslate
from cdc.row_changes import UntranslatableChange
from cdc.transports import Publisher

logger = structlog.get_logger(__name__)

REASON_UNTRANSLATABLE = "untranslatable"
REASON_SCHEMA_MISMATCH = "schema_mismatch"
# Any other error a translator raised on this change's values (a bug, a missing lookup row).
REASON_TRANSLATOR_ERROR = "translator_error"
# Every reason reason_of gives: the engine creates each capture's dead-letter series at zero with them.
REASONS = (REASON_UNTRANSLATABLE, REASON_SCHEMA_MISMATCH, REASON_TRANSLATOR_ERROR)
# Errors raised by translating one change that say something about that change (its values, the
# translator's code, a lookup it needs): retrying the batch would fail again the same way.
POISON_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # UntranslatableChange, EventSchemaError, JSON decoding, bad values
    LookupError,  # a missing column (KeyError), a product missing from the catalogue
    TypeError,
    AttributeError,
    ArithmeticError,
)
ERROR_TEXT_LIMIT = 4000


class DeadLetterNotFound(LookupError):
    """No dead letter has that id."""


def reason_of(error: Exception) -> str:
    if isinstance(error, EventSchemaError):
        return REASON_SCHEMA_MISMATCH
    if isinstance(error, UntranslatableChange):
        return REASON_UNTRANSLATABLE
    return REASON_TRANSLATOR_ERROR


@dataclass(frozen=True)
class DeadLetter:
    """A poison change of the batch being handled, not stored yet."""

    capture: str
    engine: str
    record: CapturedRecord
    error: Exception

    @property
    def reason(self) -> str:
        return reason_of(self.error)

    def key(self) -> str:
        return stable_event_id(
            "dead-letter", self.capture, self.record.destination, self.record.key, self.record.value
        )


def record_events_checked(translate: RecordTranslate, record: CapturedRecord) -> ValidatedEvents:
    """Translates one record and validates its events against their schemas (EventSchemaError)."""
    return events_validated(translate(record))


def dead_letters_store(*, letters: Sequence[DeadLetter], at: datetime) -> int:
    """Stores the batch's dead letters before the batch is committed; a letter stored by an earlier
    delivery of the same batch is kept as it is. Returns how many are new."""
    if not letters:
        return 0
    rows = [
        CaptureDeadLetter(
            letter_key=letter.key(),
            capture=letter.capture,
            engine=letter.engine,
            position=letter.record.position[:64],
            record=letter.record.to_json(),
            reason=letter.reason,
            error_type=f"{type(letter.error).__module__}.{type(letter.error).__qualname__}"[:200],
            error=str(letter.error)[:ERROR_TEXT_LIMIT],
            created_at=at,
        )
        for letter in letters
    ]
    keys = [row.letter_key for row in rows]
    with transaction.atomic(using=_alias()):
        existing = set(
            CaptureDeadLetter.objects.using(_alias())
            .filter(letter_key__in=keys)
            .values_list("letter_key", flat=True)
        )
        CaptureDeadLetter.objects.using(_alias()).bulk_create(rows, ignore_conflicts=True)
    for letter in letters:
        if letter.key() in existing:
            continue
        metrics.DEAD_LETTERS.labels(letter.capture, letter.reason).inc()
        logger.error(
            "cdc.dead_lettered",
            capture=letter.capture,
            engine=letter.engine,
            reason=letter.reason,
            error_type=type(letter.error).__name__,
            error=str(letter.error)[:500],
            destination=letter.record.destination,
            position=letter.record.position,
        )
    return len(set(keys) - existing)


def dead_letters_select(*, capture: str | None = None, pending_only: bool = False) -> list[CaptureDeadLetter]:
    letters = CaptureDeadLetter.objects.using(_alias()).all()
    if capture:
        letters = letters.filter(capture=capture)
    if pending_only:
        letters = letters.filter(replayed_at__isnull=True)
    return list(letters.order_by("id"))


def dead_letters_pending_count(*, capture: str) -> int:
    return CaptureDeadLetter.objects.using(_alias()).filter(capture=capture, replayed_at__isnull=True).count()


def dead_letter_get(*, letter_id: int) -> CaptureDeadLetter:
    letter = CaptureDeadLetter.objects.using(_alias()).filter(id=letter_id).first()
    if letter is None:
        raise DeadLetterNotFound(f"no dead letter {letter_id}")
    return letter


@dataclass(frozen=True)
class ReplayOutcome:
    letter_id: int
    events: ValidatedEvents
    published: bool


def dead_letter_replay(
    *, letter_id: int, translate: RecordTranslate, publisher: Publisher | None, at: datetime
) -> ReplayOutcome:
    """Translates the letter's record again with the current code and publishes its events (none
    with `publisher=None`: a dry run). The letter is marked replayed, not deleted. Raises what the
    translation or the schema check raises when the change is still poison."""
    letter = dead_letter_get(letter_id=letter_id)
    events = record_events_checked(translate, CapturedRecord.from_json(letter.record))
    if publisher is None:
        return ReplayOutcome(letter_id=letter_id, events=events, published=False)
    publisher.publish_batch(events)
    CaptureDeadLetter.objects.using(_alias()).filter(id=letter_id).update(
        replayed_at=at,
        replay_count=letter.replay_count + 1,
        replayed_event_ids=[event["id"] for event in events],
    )
    logger.info(
        "cdc.dead_letter_replayed",
        letter_id=letter_id,
        capture=letter.capture,
        events=[event["type"] for event in events],
    )
    return ReplayOutcome(letter_id=letter_id, events=events, published=True)


def _alias() -> str:
    from config.routers import database_alias

    return database_alias("control")
