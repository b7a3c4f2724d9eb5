"""Failed API-key attempts, counted in the shared cache per client address and per presented key
prefix, so that guessing keys is slowed down across every process of a service (the monolith's MES
API and the pricing service both use it, each with its own cache key prefix).

A client's failures are counted from its first one for MES_API_KEY_FAILURE_WINDOW_SECONDS (the
counter's expiry starts with it, not at a clock boundary): cheap (one read per request, one
increment per failure) and the same for every process. The failure that reaches a bound locks the
address or prefix out for a whole window from that moment, which is what Retry-After says. Fixed
clock windows (what this was before) reset every counter at each boundary: a guesser got a fresh
allowance there, and a hundred wrong keys in a row could meet 401 again after the 429s began.
The client's address is the peer's, or the forwarded one when the peer is a trusted proxy
(LEGACY_TRUSTED_PROXIES: the strangler proxy's place).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.conf import settings
from django.core.cache import cache as shared_cache
from rest_framework import authentication, exceptions
from rest_framework.request import Request

# The first characters of a key, stored in clear beside its hash by both services (their ApiKey.prefix).
API_KEY_PREFIX_LENGTH = 8


@dataclass(frozen=True)
class KeyAttempt:
    """Who presented a key: the client's address and the key's first characters."""

    address: str
    prefix: str

    @classmethod
    def of(cls, *, address: str, raw_key: str) -> KeyAttempt:
        return cls(address=address, prefix=raw_key[:API_KEY_PREFIX_LENGTH])


@dataclass(frozen=True)
class FailureBounds:
    per_address: int
    per_prefix: int
    window_seconds: int

    @classmethod
    def from_settings(cls) -> FailureBounds:
        return cls(
            per_address=settings.MES_API_KEY_FAILURES_PER_ADDRESS,
            per_prefix=settings.MES_API_KEY_FAILURES_PER_PREFIX,
            window_seconds=settings.MES_API_KEY_FAILURE_WINDOW_SECONDS,
        )


def _keys(attempt: KeyAttempt, kind: str) -> dict[str, str]:
    """The cache keys of one attempt's address and prefix: `kind` is "failures" or "lockout"."""
    # The prefix is whatever the client sent: hashed, it is a safe cache key of fixed length.
    prefix = hashlib.sha256(attempt.prefix.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return {
        "address": f"api-key-{kind}:address:{attempt.address}",
        "prefix": f"api-key-{kind}:prefix:{prefix}",
    }


def key_attempt_wait_seconds(*, attempt: KeyAttempt, bounds: FailureBounds, now: float | None = None) -> int:
    """0 when this attempt may be checked; else the seconds until its address or prefix may try again."""
    now = time.time() if now is None else now
    lockouts: Mapping[str, float] = shared_cache.get_many(list(_keys(attempt, "lockout").values())) or {}
    until = max(lockouts.values(), default=0.0)
    return max(1, math.ceil(until - now)) if until > now else 0


def _count_failure(key: str, window_seconds: int) -> int | None:
    """One more failure on `key`'s counter, created with the window's expiry on the first one; the
    count, or None while the cache is down (its errors are logged by django-redis)."""
    for _ in range(2):
        shared_cache.add(key, 0, timeout=window_seconds)
        try:
            # incr() is atomic in Redis and keeps the expiry: concurrent failures in several
            # processes are all counted.
            return shared_cache.incr(key)
        except ValueError:
            continue  # the counter expired between add() and incr(): start a new one
    return None


def key_attempt_failed(*, attempt: KeyAttempt, bounds: FailureBounds, now: float | None = None) -> None:
    """Counts a key that matched no API key against the attempt's address and prefix; the failure
    that reaches a bound locks that address or prefix out for a window from now."""
    now = time.time() if now is None else now
    counters, lockouts = _keys(attempt, "failures"), _keys(attempt, "lockout")
    for kind, bound in (("address", bounds.per_address), ("prefix", bounds.per_prefix)):
        count = _count_failure(counters[kind], bounds.window_seconds)
        if count is not None and count >= bound:
            # add(): concurrent failures past the bound keep the first lockout's end.
            shared_cache.add(lockouts[kind], now + bounds.window_seconds, timeout=bounds.window_seconds + 1)


@cache
def _trusted_networks(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in networks)


def _is_trusted(address: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(*, peer: str, forwarded_for: str | None) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    X-Forwarded-For hop that is not itself a trusted proxy (hops to its left are the client's
    word and can be forged)."""
    networks = _trusted_networks(tuple(settings.LEGACY_TRUSTED_PROXIES))
    if not forwarded_for or not _is_trusted(peer, networks):
        return peer
    address = peer
    for hop in reversed([hop.strip() for hop in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # not an address: the nearest hop that is one stands for the client
        address = hop
        if not _is_trusted(hop, networks):
            break
    return address


# Bounds what a client can make a service hash and count; real keys are 43 characters.
MAX_KEY_LENGTH = 256


class HashedApiKeyAuthentication(authentication.BaseAuthentication):
    """ "X-API-Key: <key>" checked against stored hashes, behind the failed-attempt bounds above. A
    service names how a key is found (`key_find`, by the raw key); the key needs an `active` flag."""

    header = "X-API-Key"

    def key_find(self, raw: str) -> Any | None:
        raise NotImplementedError

    def authenticate(self, request: Request) -> tuple[Any, str] | None:
        raw = request.headers.get(self.header)
        if raw is None:
            return None
        attempt = KeyAttempt.of(
            address=client_address(
                peer=request.META.get("REMOTE_ADDR", ""),
                forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR"),
            ),
            raw_key=raw,
        )
        bounds = FailureBounds.from_settings()
        # Checked before the key, so that past the bound even the right key tells a guesser nothing.
        wait = key_attempt_wait_seconds(attempt=attempt, bounds=bounds)
        if wait:
            raise exceptions.Throttled(
                wait=wait, detail="Too many wrong API keys from this address or with this key prefix."
            )
        key = self.key_find(raw) if len(raw) <= MAX_KEY_LENGTH else None
        if key is None:
            key_attempt_failed(attempt=attempt, bounds=bounds)
            raise exceptions.AuthenticationFailed("The API key is not valid.")
        if not key.active:
            raise exceptions.PermissionDenied("The API key has been revoked.")
        return key, raw

    def authenticate_header(self, request: Request) -> str:
        return self.header
