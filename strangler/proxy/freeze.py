"""The write freeze of a cutover: writes to a frozen slice wait (up to a bound per slice) until the
routing table changes (the flip) or the freeze's time runs out, then go to the slice's owner then.

It also counts the writes to each slice that are in flight (sent on, not held), so the proxy can
acknowledge a freeze: "I route with a table in which the slice is frozen, and no write I let through
before it is still running". A cutover drains the source only after every proxy acknowledged.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from strangler.proxy import metrics
from strangler.proxy.routing import RoutingTable

logger = structlog.get_logger(__name__)


class WriteFreeze:
    def __init__(self) -> None:
        self.table: RoutingTable | None = None
        self.changed = asyncio.Event()
        self.held: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}
        # Set when the acknowledgements may have changed (a frozen table loaded, a frozen slice's last
        # write finished): the control sync reports them at once instead of at the next heartbeat.
        self.acks_changed = asyncio.Event()
        # Slices frozen in the loaded table: (wall time first seen frozen, phase then).
        self.frozen_since: dict[str, tuple[float, str]] = {}

    def _freezes_measure(self, table: RoutingTable) -> None:
        """Observes each freeze that the new table ends: from the first table in which this proxy saw
        the slice frozen to this one (or to the freeze's deadline when it ran out before)."""
        now = time.time()
        for name, slice_ in table.slices.items():
            if slice_.frozen(now):
                self.frozen_since.setdefault(name, (now, slice_.phase))
        for name in [
            n for n in self.frozen_since if n not in table.slices or not table.slices[n].frozen(now)
        ]:
            began, phase = self.frozen_since.pop(name)
            previous = self.table.slices.get(name) if self.table else None
            ended = min(now, previous.freeze_until or now) if previous is not None else now
            current = table.slices.get(name)
            outcome = "flipped" if current is not None and current.phase != phase else "released"
            metrics.FREEZE_SECONDS.labels(name, outcome).observe(max(ended - began, 0.0))

    def install(self, table: RoutingTable) -> None:
        was_frozen = self._frozen_names(self.table)
        self._freezes_measure(table)
        self.table = table
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()  # wakes held writes to look at the new table
        if was_frozen or self._frozen_names(table):
            self.acks_changed.set()

    @staticmethod
    def _frozen_names(table: RoutingTable | None) -> set[str]:
        if table is None:
            return set()
        now = time.time()
        return {name for name, s in table.slices.items() if s.frozen(now)}

    def write_started(self, slice_name: str) -> None:
        """A write to the slice goes on to a backend. Called with no await between the freeze check
        and this call, so a table installed in between cannot miss it."""
        self.in_flight[slice_name] = self.in_flight.get(slice_name, 0) + 1

    def write_finished(self, slice_name: str) -> None:
        left = self.in_flight[slice_name] - 1
        self.in_flight[slice_name] = left
        if left == 0 and self.table is not None:
            slice_ = self.table.slices.get(slice_name)
            if slice_ is not None and slice_.frozen(time.time()):
                self.acks_changed.set()

    def acks(self, now: float) -> dict[str, int]:
        """{slice: routing version} for each slice frozen in the loaded table with no write in flight."""
        table = self.table
        if table is None:
            return {}
        return {
            name: table.version
            for name, s in table.slices.items()
            if s.frozen(now) and not self.in_flight.get(name, 0)
        }

    async def hold(self, slice_name: str) -> bool:
        """Waits while the slice's writes are frozen; False when its queue of held writes is full."""
        assert self.table is not None
        slice_ = self.table.slices[slice_name]
        held = self.held.get(slice_name, 0)
        if held >= slice_.freeze_max_held:
            return False
        self.held[slice_name] = held + 1
        metrics.HELD_WRITES.labels(slice_name).set(held + 1)
        try:
            while True:
                current = self.table.slices.get(slice_name) if self.table else None
                now = time.time()  # freeze deadlines are wall-clock times from the database
                if current is None or not current.frozen(now):
                    return True
                assert current.freeze_until is not None
                try:
                    await asyncio.wait_for(self.changed.wait(), current.freeze_until - now)
                except TimeoutError:
                    # The freeze's time bound passed without a flip: the cutover aborted, so the write
                    # goes to the slice's current owner (nothing is lost).
                    logger.warning("proxy.write_freeze_expired", slice=slice_name)
                    return True
        finally:
            self.held[slice_name] -= 1
            metrics.HELD_WRITES.labels(slice_name).set(self.held[slice_name])
