"""How every control-plane change is made: inside a transaction holding the slice's row lock (which
serialises operators and proxies acting on one slice), audited with who, why and the gate figures,
and bumping the routing version that proxies poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog
from django.db import connections, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from strangler import selectors
from strangler.models import AuditEntry, ControlSettings, Slice

logger = structlog.get_logger(__name__)

# Every routing version bump is announced on this PostgreSQL channel when it commits: proxies that
# LISTEN reload at once (a write freeze must reach them fast); polling stays their fallback.
ROUTING_CHANNEL = "strangler_routing"


class OperationRefused(Exception):
    """The action is not allowed in the slice's current state; the message says what to do."""


@dataclass
class PlanChange:
    """One change to the control plane: an operator action on a slice, or a plan load."""

    action: str
    slice_name: str
    from_state: dict[str, Any]
    to_state: dict[str, Any]
    gate: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    audit_id: int | None = None
    version: int | None = None  # the routing version this change produced (None for a dry run)

    @property
    def changed(self) -> bool:
        return self.from_state != self.to_state


def routing_version_bump(alias: str) -> int:
    """Versions only grow, also across a wiped table (a restored backup, a test flush): the next one is
    at least the current epoch milliseconds, so a proxy never mistakes a new table for the one it has."""
    settings_row, _ = ControlSettings.objects.using(alias).select_for_update().get_or_create(id=1)
    settings_row.version = Greatest(F("version") + 1, Value(int(time.time() * 1000)))
    settings_row.save(update_fields=["version", "updated_at"])
    settings_row.refresh_from_db(fields=["version"])
    version = int(settings_row.version)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [ROUTING_CHANNEL, str(version)])
    return version


def slice_lock(alias: str, name: str, hold_lock_seconds: float) -> Slice:
    """The slice's row, locked until the transaction ends."""
    try:
        slice_ = Slice.objects.using(alias).select_for_update().get(name=name)
    except Slice.DoesNotExist:
        known = ", ".join(selectors.slice_names(alias=alias)) or "none"
        raise OperationRefused(f"There is no slice {name!r} (known: {known}); load the plan first.") from None
    if hold_lock_seconds:
        # Lets a test (or an operator rehearsal) prove that a second action waits for the first.
        time.sleep(hold_lock_seconds)
    return slice_


@contextmanager
def locked_slice(
    name: str, hold_lock_seconds: float
) -> Iterator[tuple[str, Slice, dict[str, Any], Callable[..., PlanChange]]]:
    """A transaction on the control database holding the slice's row lock. Yields the alias, the
    slice, its state before, and `finish(action=, who=, why=, gate=, dry_run=)` that audits and
    saves the change."""
    alias = selectors.control_alias()
    with transaction.atomic(using=alias):
        slice_ = slice_lock(alias, name, hold_lock_seconds)
        before = selectors.slice_state(slice_)
        yield alias, slice_, before, partial(change_finish, alias=alias, slice_=slice_, before=before)


def change_finish(
    *,
    alias: str,
    action: str,
    slice_: Slice | None,
    before: dict[str, Any],
    who: str,
    why: str,
    gate: dict[str, Any],
    dry_run: bool,
    after: dict[str, Any] | None = None,
) -> PlanChange:
    """Audits and saves the change (or rolls it back for a dry run); `after` defaults to the slice's state."""
    if after is None:
        assert slice_ is not None, "a change without a slice names its own after-state"
        after = selectors.slice_state(slice_)
    name = slice_.name if slice_ else ""
    change = PlanChange(action, name, before, after, gate, dry_run)
    if dry_run:
        transaction.set_rollback(True, using=alias)
        return change
    if slice_ is not None:
        slice_.save(using=alias)
    entry = AuditEntry.objects.using(alias).create(
        who=who, action=action, slice_name=name, from_state=before, to_state=after, why=why, gate=gate
    )
    change.version = routing_version_bump(alias)
    change.audit_id = entry.id
    logger.info("strangler.changed", action=action, slice=name, who=who, to_state=after, gate=gate)
    return change
