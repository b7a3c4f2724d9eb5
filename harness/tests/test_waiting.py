"""wait_until, wait_port and wait_http_ok: values, deadlines, and giving up on a dead process."""

import socket
import subprocess
import sys
import time

import pytest

from harness.waiting import ProcessExited, WaitTimeout, wait_http_ok, wait_port, wait_until
from ops.process_group import ManagedProcess, free_port, python_command


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, "", "ready", "later"])
    assert wait_until(lambda: next(calls), seconds=5, interval=0.001) == "ready"


def test_wait_until_raises_a_typed_timeout_that_names_the_condition() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="the queue drained not met within 0.2 s"):
        wait_until(lambda: False, seconds=0.2, interval=0.01, what="the queue drained")
    assert 0.2 <= time.monotonic() - started < 2


def test_wait_until_gives_up_as_soon_as_the_watched_process_exits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "child.log"
    command = python_command("-c", "print('bye'); raise SystemExit(3)")
    child = ManagedProcess("child", command, {}, log).start()
    started = time.monotonic()
    with pytest.raises(ProcessExited, match="child exited before port open") as raised:
        wait_until(lambda: False, seconds=30, what="port open", process=child)
    assert time.monotonic() - started < 10
    assert "bye" in str(raised.value)  # the log tail says why it died
    child.stop()


def test_wait_port_returns_once_something_listens() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        wait_port(server.getsockname()[1], seconds=2)
    with pytest.raises(WaitTimeout):
        wait_port(free_port(), seconds=0.3)


def test_wait_http_ok_fails_early_when_the_server_process_exits() -> None:
    popen = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    started = time.monotonic()
    with pytest.raises(ProcessExited, match="exited with 2"):
        wait_http_ok(f"http://127.0.0.1:{free_port()}/healthz", seconds=30, process=popen)
    assert time.monotonic() - started < 10


def test_wait_http_ok_says_what_it_last_saw_when_nothing_answers() -> None:
    with pytest.raises(WaitTimeout, match="did not answer within 0.3 s .*refused"):
        wait_http_ok(f"http://127.0.0.1:{free_port()}/healthz", seconds=0.3)
