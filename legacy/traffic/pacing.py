"""When each request of a run is due: an open-loop schedule that does not wait for answers.

An open loop keeps sending at the target rate however slow the server gets, so a slow server
shows up as latency and errors instead of silently lowering the load (coordinated omission).
"""

import math
import re
from collections.abc import Iterator


def arrival_offsets(*, rate: float, duration: float) -> Iterator[float]:
    """Seconds after the start at which each request is due, evenly spaced at `rate` per second
    for `duration` seconds: rate x duration requests, the first at 0."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    count = math.floor(rate * duration + 1e-9)
    for index in range(count):
        yield index / rate


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rate_per_second(limit: str) -> float:
    """A DRF-style throttle rate ("6000/min", "100/s") in requests per second."""
    match = _RATE.match(limit)
    if match is None:
        raise ValueError(f"not a rate like '6000/min': {limit!r}")
    return int(match.group(1)) / _PERIOD_SECONDS[match.group(2)[0]]


def keys_needed(*, rate: float, per_key_limit: float, headroom: float = 0.5) -> int:
    """How many API keys keep each key's share of `rate` under `headroom` x its limit."""
    if per_key_limit <= 0:
        raise ValueError("per_key_limit must be positive")
    return max(1, math.ceil(rate / (per_key_limit * headroom)))
