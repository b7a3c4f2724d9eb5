"""The forwarder tests put between a client and a broker: it forwards, it can be cut, it survives
an upstream that is down, and it runs as a process of its own."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from harness.tcp_forwarder import TcpForwarder
from harness.waiting import wait_port
from ops.process_group import ManagedProcess, free_port, python_command


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A server answering every byte it gets with the same byte."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()


def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        return conn.recv(65536)


def test_forwards_both_ways_and_a_cut_drops_open_connections_only(echo_port: int) -> None:
    with TcpForwarder("127.0.0.1", echo_port) as forwarder:
        assert roundtrip(forwarder.port) == b"ping"
        held = socket.create_connection(("127.0.0.1", forwarder.port), timeout=5)
        held.sendall(b"a")
        assert held.recv(10) == b"a"
        forwarder.cut()
        assert held.recv(10) == b""  # the client sees its connection end
        held.close()
        assert roundtrip(forwarder.port, b"again") == b"again"  # new ones are accepted


def test_keeps_accepting_after_a_connection_while_the_upstream_was_down(echo_port: int) -> None:
    down = free_port()
    with TcpForwarder("127.0.0.1", down) as forwarder:
        with socket.create_connection(("127.0.0.1", forwarder.port), timeout=5) as conn:
            assert conn.recv(10) == b""  # refused upstream: closed at once, as a direct connect would be
        forwarder.upstream = ("127.0.0.1", echo_port)  # the broker is back
        assert roundtrip(forwarder.port) == b"ping"


def test_runs_as_a_process_a_test_can_kill(echo_port: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    command = python_command("-m", "harness.tcp_forwarder", str(port), "127.0.0.1", str(echo_port))
    process = ManagedProcess("forwarder", command, {}, tmp_path / "forwarder.log").start()
    try:
        wait_port(port, seconds=10, process=process)
        assert roundtrip(port) == b"ping"
    finally:
        process.stop()
    with pytest.raises(OSError):
        roundtrip(port)
