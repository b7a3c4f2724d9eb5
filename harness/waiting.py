"""Waiting for a condition with a deadline: the one polling loop of the tests, benchmarks and demo."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition was not met within the time given."""


class ProcessExited(RuntimeError):
    """The process a wait depended on exited before the condition was met."""


class Watched(Protocol):
    """A child process a wait gives up on when it dies (ops.process_group.ManagedProcess)."""

    name: str

    def alive(self) -> bool: ...

    def log_tail(self, lines: int = 40) -> str: ...


def wait_until(
    predicate: Callable[[], T],
    *,
    seconds: float,
    interval: float = 0.05,
    what: str = "condition",
    process: Watched | None = None,
) -> T:
    """Polls `predicate` until it returns a truthy value and returns that value; raises
    WaitTimeout after `seconds`, or ProcessExited as soon as `process` is no longer alive."""
    deadline = time.monotonic() + seconds
    while True:
        if process is not None and not process.alive():
            raise ProcessExited(f"{process.name} exited before {what}:\n{process.log_tail()}")
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{what} not met within {seconds} s")
        time.sleep(interval)


def port_open(port: int, *, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(port: int, *, seconds: float, host: str = "127.0.0.1", process: Watched | None = None) -> None:
    """Waits until something accepts connections on host:port."""
    wait_until(
        lambda: port_open(port, host=host),
        seconds=seconds,
        interval=0.1,
        what=f"port {host}:{port} open",
        process=process,
    )


def wait_http_ok(url: str, *, seconds: float, process: subprocess.Popen | None = None) -> None:
    """Waits until `url` answers 2xx; fails early if `process` exits first."""
    last_error = ""

    def answers() -> bool:
        nonlocal last_error
        if process is not None and process.poll() is not None:
            raise ProcessExited(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
            return False

    try:
        wait_until(answers, seconds=seconds, interval=0.1, what=f"{url} answering")
    except WaitTimeout as exc:
        raise WaitTimeout(f"{url} did not answer within {seconds} s ({last_error})") from exc
