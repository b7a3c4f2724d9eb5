"""Per-key request limits of the pricing API, counted in the shared Redis so that every instance of
the service agrees: one atomic counter per key and window, created by the window's first request.

A window starts with a key's first request and lasts the rate's period; the counter and its expiry
are set in one Lua call (INCR, then PEXPIRE on the first), so concurrent requests on several
instances are all counted and exactly the limit passes in a window. With Redis unreachable the
limits are off (logged), as in the monolith: pricing stays up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import structlog
from django.core.cache import cache
from django_redis import get_redis_connection
from redis.exceptions import RedisError

logger = structlog.get_logger(__name__)

_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """ "6000/min", "1000/s", "10/h" (DRF's notation: the period's first letter counts)."""
        number, period = text.split("/")
        return cls(requests=int(number), seconds=_PERIODS[period.strip()[0]])


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    wait_seconds: int  # until the window ends, when refused; 0 otherwise


def rate_limit_hit(*, subject: str, rate: Rate) -> Verdict:
    """Counts one request of `subject` (e.g. an API key's id) against `rate`."""
    key = cache.make_key(f"pricing-rate:{subject}:{rate.requests}/{rate.seconds}")
    try:
        count, ttl_ms = get_redis_connection("default").eval(_COUNT, 1, key, rate.seconds * 1000)
    except RedisError as exc:
        logger.warning("pricing.rate_limit_off", reason="redis_unavailable", error=type(exc).__name__)
        return Verdict(allowed=True, wait_seconds=0)
    if int(count) <= rate.requests:
        return Verdict(allowed=True, wait_seconds=0)
    return Verdict(allowed=False, wait_seconds=max(1, math.ceil(int(ttl_ms) / 1000)))
