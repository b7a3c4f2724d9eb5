"""A TCP forwarder between a client and a broker that a test can cut, to show the client recover
from a lost connection without touching the shared broker.

In the test's process: `with TcpForwarder(host, port) as forwarder: ... forwarder.cut()`.
As a process of its own, which a test can kill (the broker looks unreachable) and start again:

    python -m harness.tcp_forwarder LISTEN_PORT TARGET_HOST TARGET_PORT
"""

from __future__ import annotations

import asyncio
import sys
import threading
from types import TracebackType


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class TcpForwarder:
    """Forwards every connection to 127.0.0.1:`port` to the upstream, on an event loop of its own
    (a daemon thread), so the test's code around it is never blocked by it."""

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.cuts = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", listen_port, reuse_address=True)
        )
        self.port: int = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()  # upstream down: the client's connection ends, as a direct one would
            return
        pair = {client_writer, upstream_writer}
        self._writers |= pair
        try:
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        finally:
            self._writers -= pair

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        """Drops every connection open now (new ones are accepted again)."""
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(timeout=10)
        self.cuts += 1

    def close(self) -> None:
        if not self._loop.is_running():
            return
        self._loop.call_soon_threadsafe(self._server.close)
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def serve_forever(self) -> None:
        self._thread.join()

    def __enter__(self) -> TcpForwarder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


if __name__ == "__main__":
    listen_port, target_host, target_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    TcpForwarder(target_host, target_port, listen_port=listen_port).serve_forever()
