"""Fixtures of the proxy's tests over controllable backends (test_proxy_dataplane.py,
test_proxy_from_outside.py, test_proxy_nginx.py): one stack per module, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.process_group import ProcessGroup
from tests.integration.proxy_stack import Stack, stack_start


@pytest.fixture(scope="module")
def proxy_env() -> dict[str, str]:
    """What the module's proxy runs with on top of the test environment; a module overrides it."""
    return {}


@pytest.fixture(scope="module")
def stack_running(live_env: dict[str, str], proxy_env: dict[str, str]) -> Iterator[Stack]:
    """Two controllable backends and a proxy in front of them, for the module's tests."""
    with ProcessGroup() as group:
        yield stack_start(group, {**live_env, **proxy_env})


@pytest.fixture
def stack(stack_running: Stack) -> Stack:
    """The module's stack with healthy backends and the test plan loaded again, whatever an
    earlier test changed."""
    stack_running.reset()
    return stack_running
