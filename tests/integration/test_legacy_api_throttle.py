"""Failed MES API-key attempts are throttled per client address and per key prefix, across the
web workers of one monolith (granian with two worker processes, counters in the shared Redis).

Clients speak from distinct loopback addresses (any 127.x.y.z is this machine), drawn at random
per run so that counters an earlier run left in its window cannot meet this one's.
"""

from __future__ import annotations

import http.client
import json
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings

from harness.waiting import wait_http_ok
from legacy.processes import legacy_process_commands
from ops.process_group import ManagedProcess, ProcessGroup, free_port
from tests.conftest import LOG_DIR
from tests.integration.legacy_api_world import World, shared_world

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

PER_ADDRESS = 8
PER_PREFIX = 6
WINDOW_SECONDS = 600
PATH = "/mes/api/production-orders/"


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    body: dict


@pytest.fixture(scope="module")
def world(legacy_stack, django_db_blocker) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from shared_world(django_db_blocker)


@pytest.fixture(scope="module")
def web(live_env: dict[str, str], world: World) -> Iterator[tuple[str, int]]:
    """The monolith's web process with two workers and small bounds; (host, port)."""
    env = {
        **live_env,
        "MES_API_KEY_FAILURES_PER_ADDRESS": str(PER_ADDRESS),
        "MES_API_KEY_FAILURES_PER_PREFIX": str(PER_PREFIX),
        "MES_API_KEY_FAILURE_WINDOW_SECONDS": str(WINDOW_SECONDS),
    }
    port = free_port()
    command = legacy_process_commands(port=port, web_workers=2)["web"]
    with ProcessGroup() as group:
        web = group.start(ManagedProcess("web", command, env, LOG_DIR / f"throttle-web-{port}.log"))
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", seconds=30, process=web.popen)
        yield "127.0.0.1", port


def new_address() -> str:
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def ask(web: tuple[str, int], *, source: str, key: str, forwarded_for: str | None = None) -> Answer:
    """One request on a new connection (so that either worker may take it) from `source`."""
    connection = http.client.HTTPConnection(*web, timeout=10, source_address=(source, 0))
    headers = {"X-API-Key": key}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    try:
        connection.request("GET", PATH, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.getheader("Retry-After"), json.loads(response.read()))
    finally:
        connection.close()


def wrong_key(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(24)


def assert_throttled(answer: Answer) -> None:
    assert answer.status == 429, answer
    assert answer.body["error"]["code"] == "rate_limited", answer
    assert answer.retry_after is not None and 0 < int(answer.retry_after) <= WINDOW_SECONDS, answer


def test_wrong_keys_from_one_address_are_refused_429_past_the_bound(web, world: World) -> None:  # type: ignore[no-untyped-def]
    attacker, other = new_address(), new_address()
    statuses = [ask(web, source=attacker, key=wrong_key()).status for _ in range(PER_ADDRESS)]
    assert statuses == [401] * PER_ADDRESS
    refused = ask(web, source=attacker, key=wrong_key())
    assert_throttled(refused)
    # Locked out for a whole window from the failure that reached the bound, not until a clock
    # boundary (which reset every counter and gave a guesser a fresh allowance there).
    assert int(refused.retry_after or 0) >= WINDOW_SECONDS - 30, refused
    # Past the bound even the right key tells the address nothing.
    assert_throttled(ask(web, source=attacker, key=world.api_key))
    assert ask(web, source=other, key=world.api_key).status == 200


def test_wrong_keys_with_one_prefix_are_refused_429_whatever_the_address(web, world: World) -> None:  # type: ignore[no-untyped-def]
    prefix = secrets.token_hex(4)  # eight characters, the length of a stored key prefix
    statuses = [ask(web, source=new_address(), key=wrong_key(prefix)).status for _ in range(PER_PREFIX)]
    assert statuses == [401] * PER_PREFIX
    assert_throttled(ask(web, source=new_address(), key=wrong_key(prefix)))
    assert ask(web, source=new_address(), key=world.api_key).status == 200
    assert ask(web, source=new_address(), key=wrong_key()).status == 401


def test_behind_a_trusted_proxy_the_forwarded_client_is_throttled_not_the_proxy(web, world: World) -> None:  # type: ignore[no-untyped-def]
    # 127.0.0.1 is a trusted proxy by default (LEGACY_TRUSTED_PROXIES): the strangler proxy's place.
    attacker, customer = (f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}" for _ in range(2))
    for _ in range(PER_ADDRESS):
        assert ask(web, source="127.0.0.1", key=wrong_key(), forwarded_for=attacker).status == 401
    assert_throttled(ask(web, source="127.0.0.1", key=wrong_key(), forwarded_for=attacker))
    assert ask(web, source="127.0.0.1", key=world.api_key, forwarded_for=customer).status == 200


def test_a_client_that_is_no_proxy_cannot_escape_by_forging_x_forwarded_for(web, world: World) -> None:  # type: ignore[no-untyped-def]
    attacker = new_address()
    for n in range(PER_ADDRESS):
        forged = f"198.51.100.{n + 1}"
        assert ask(web, source=attacker, key=wrong_key(), forwarded_for=forged).status == 401
    assert_throttled(ask(web, source=attacker, key=wrong_key(), forwarded_for="198.51.100.200"))


def test_a_hundred_wrong_keys_at_the_default_bounds_meet_429_from_the_bound_on(
    legacy_stack, world: World
) -> None:  # type: ignore[no-untyped-def]
    # As the defect was seen: the monolith as the README starts it, default settings.
    host_port = legacy_stack.base_url.removeprefix("http://").split(":")
    web = (host_port[0], int(host_port[1]))
    bound = settings.MES_API_KEY_FAILURES_PER_ADDRESS
    attacker = new_address()
    statuses = [ask(web, source=attacker, key=wrong_key()).status for _ in range(100)]
    assert statuses == [401] * bound + [429] * (100 - bound)
    assert ask(web, source=new_address(), key=world.api_key).status == 200
