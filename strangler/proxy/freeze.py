"""The write freeze of a cutover: writes to a frozen slice wait (up to a bound per slice) until the
routing table changes (the flip) or the freeze's time runs out, then go to the slice's owner then."""

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

    def install(self, table: RoutingTable) -> None:
        self.table = table
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()  # wakes held writes to look at the new table

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
