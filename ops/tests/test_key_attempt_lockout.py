"""A client's wrong keys lock it out for a window from the failure that reaches the bound,
whatever the clock (the counting is tested across processes in test_legacy_api_throttle)."""

import secrets

import pytest
from django.core.cache import cache
from django.test import override_settings

from ops.key_attempts import FailureBounds, KeyAttempt, key_attempt_failed, key_attempt_wait_seconds

BOUNDS = FailureBounds(per_address=3, per_prefix=5, window_seconds=60)

pytestmark = pytest.mark.usefixtures("local_cache")


@pytest.fixture
def local_cache():  # type: ignore[no-untyped-def]
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
        cache.clear()
        yield


def attempt(address: str = "192.0.2.7") -> KeyAttempt:
    return KeyAttempt.of(address=address, raw_key=secrets.token_urlsafe(24))


@pytest.mark.parametrize("start", [0.0, 59.5, 119.99])  # anywhere in a minute of the clock
def test_the_failure_that_reaches_the_bound_locks_out_for_a_whole_window(start: float) -> None:
    now = 1_800_000_000.0 + start
    for n in range(BOUNDS.per_address):
        assert key_attempt_wait_seconds(attempt=attempt(), bounds=BOUNDS, now=now + n) == 0
        key_attempt_failed(attempt=attempt(), bounds=BOUNDS, now=now + n)
    locked_at = now + BOUNDS.per_address - 1
    assert key_attempt_wait_seconds(attempt=attempt(), bounds=BOUNDS, now=locked_at + 0.5) == 60
    assert key_attempt_wait_seconds(attempt=attempt(), bounds=BOUNDS, now=locked_at + 59.5) == 1
    assert key_attempt_wait_seconds(attempt=attempt(), bounds=BOUNDS, now=locked_at + 60.5) == 0


def test_a_lockout_holds_one_address_or_one_prefix_not_the_others() -> None:
    for _ in range(BOUNDS.per_address):
        key_attempt_failed(attempt=attempt("192.0.2.7"), bounds=BOUNDS, now=1_800_000_000.0)
    assert key_attempt_wait_seconds(attempt=attempt("192.0.2.7"), bounds=BOUNDS, now=1_800_000_001.0) > 0
    assert key_attempt_wait_seconds(attempt=attempt("192.0.2.8"), bounds=BOUNDS, now=1_800_000_001.0) == 0


def test_wrong_keys_with_one_prefix_lock_that_prefix_out_from_every_address() -> None:
    prefix = "abcdefgh"
    for n in range(BOUNDS.per_prefix):
        key = KeyAttempt.of(address=f"198.51.100.{n + 1}", raw_key=prefix + secrets.token_urlsafe(24))
        key_attempt_failed(attempt=key, bounds=BOUNDS, now=1_800_000_000.0)
    same_prefix = KeyAttempt.of(address="203.0.113.9", raw_key=prefix + "anything")
    assert key_attempt_wait_seconds(attempt=same_prefix, bounds=BOUNDS, now=1_800_000_001.0) == 59
