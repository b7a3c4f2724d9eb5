"""Read-your-writes pins: a customer who wrote through legacy during a canary reads from legacy until
sync caught up (a time bound longer than the sync lag bound). Kept per proxy process, in memory, and
bounded: at most STRANGLER_MAX_PINS customers, the least recently written dropped first, expired ones
purged by a background loop."""

from __future__ import annotations

from strangler.proxy import metrics


class Pins:
    def __init__(self, *, max_entries: int) -> None:
        self.max_entries = max_entries
        # Keyed by the hash of the customer key, not the key: a key is whatever a client sent in
        # Authorization or a cookie (kilobytes), a hash is a machine word. A collision pins a second
        # customer to legacy for a few seconds, which is harmless. Insertion order is write recency.
        self.until: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.until)

    def pin(self, key: bytes, seconds: float, now: float) -> None:
        if seconds <= 0:
            return
        digest = hash(key)
        previous = self.until.pop(digest, 0.0)
        self.until[digest] = max(previous, now + seconds)
        if len(self.until) > self.max_entries:
            del self.until[next(iter(self.until))]
            metrics.PINS_EVICTED.inc()

    def pinned(self, key: bytes, now: float) -> bool:
        until = self.until.get(hash(key))
        return until is not None and until > now

    def purge(self, now: float) -> None:
        self.until = {k: v for k, v in self.until.items() if v > now}
