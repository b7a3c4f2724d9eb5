"""Background loops of a proxy process, the only places that touch the control database: reload the
routing table when its version changes (announced on a LISTEN channel, polled as a fallback), run
canary analysis and roll back, flush shadow results, check backend health, and report a heartbeat
with the write freezes this proxy acknowledges.

Django's ORM is synchronous, so every database call runs on one dedicated thread; the LISTEN
connection has a thread of its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import structlog
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from ops.database_setup import database_dsn
from strangler import selectors, services
from strangler.models import Phase
from strangler.proxy import metrics
from strangler.proxy.routing import RoutingTable
from strangler.services.changes import ROUTING_CHANNEL

if TYPE_CHECKING:
    from strangler.proxy.app import ProxyApp

logger = structlog.get_logger(__name__)
T = TypeVar("T")


def _with_fresh_connection(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    close_old_connections()
    return function(*args, **kwargs)


class ControlSync:
    def __init__(self, app: ProxyApp) -> None:
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="control-db")
        self.tasks: list[asyncio.Task[None]] = []
        self.identity = f"proxy:{socket.gethostname()}:{os.getpid()}"
        self.started_at = timezone.now()
        self.backend_health: dict[str, bool] = {}
        # Set by a NOTIFY on the routing channel (from the listener thread) or a reconnect.
        self.routing_changed = asyncio.Event()
        self.listener_stop = threading.Event()
        self.listener: threading.Thread | None = None

    async def db(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, lambda: _with_fresh_connection(function, *args, **kwargs)
        )

    async def start(self) -> None:
        await self.refresh(force=True)
        loop = asyncio.get_running_loop()
        self.listener = threading.Thread(
            target=self._listen, args=(loop,), name="routing-listener", daemon=True
        )
        self.listener.start()
        self.tasks.append(loop.create_task(self._refresh_on_change()))
        self.tasks.append(loop.create_task(self._report_acks()))
        for loop_function, interval in (
            (self.heartbeat, settings.STRANGLER_HEARTBEAT_INTERVAL),
            (self.analyse, settings.STRANGLER_ANALYSIS_INTERVAL),
            (self.flush_shadow, 1.0),
            (self.check_health, settings.STRANGLER_HEALTH_INTERVAL),
            (self.purge_pins, 10.0),
        ):
            self.tasks.append(asyncio.get_running_loop().create_task(self._every(loop_function, interval)))
        logger.info("proxy.started", routing_version=self.app.table.version if self.app.table else None)

    async def stop(self) -> None:
        self.listener_stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.flush_shadow()
        try:
            # A cutover no longer waits for this proxy's acknowledgement.
            await self.db(services.proxy_gone_record, identity=self.identity)
        except Exception:
            logger.exception("proxy.gone_record_failed")
        self.executor.shutdown(wait=True)
        if self.listener is not None:
            self.listener.join(timeout=2)

    async def _every(self, function: Callable[[], Any], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await function()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("proxy.background_failed", loop=getattr(function, "__name__", "?"))

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """The quick path: LISTEN on the routing channel and wake the reload at once on a NOTIFY
        (sent when a change commits). On a broken connection it reconnects; polling covers the gap."""
        dsn = database_dsn(selectors.control_alias(), application_name=f"{self.identity} listener")
        while not self.listener_stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {ROUTING_CHANNEL}")
                    loop.call_soon_threadsafe(self.routing_changed.set)  # whatever changed meanwhile
                    while not self.listener_stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            loop.call_soon_threadsafe(self.routing_changed.set)
            except (psycopg.Error, RuntimeError) as exc:  # RuntimeError: the loop closed on shutdown
                if self.listener_stop.is_set():
                    return
                logger.warning("proxy.routing_listener_failed", error=str(exc))
                self.listener_stop.wait(1.0)

    async def _refresh_on_change(self) -> None:
        """Reloads on a NOTIFY at once, and checks the version every STRANGLER_POLL_INTERVAL anyway."""
        while True:
            try:
                await asyncio.wait_for(self.routing_changed.wait(), settings.STRANGLER_POLL_INTERVAL)
            except TimeoutError:
                pass
            self.routing_changed.clear()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("proxy.background_failed", loop="refresh")

    async def _report_acks(self) -> None:
        """Reports a changed set of freeze acknowledgements at once rather than at the next heartbeat."""
        freeze = self.app.freeze
        while True:
            await freeze.acks_changed.wait()
            freeze.acks_changed.clear()
            try:
                await self.heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("proxy.background_failed", loop="acks")

    async def heartbeat(self) -> None:
        table = self.app.table
        acks = self.app.freeze.acks(time.time())
        await self.db(
            services.proxy_heartbeat_record,
            identity=self.identity,
            routing_version=table.version if table else 0,
            started_at=self.started_at,
            freeze_acks=acks,
        )
        if acks:
            logger.info("proxy.freeze_acknowledged", acks=acks)

    async def refresh(self, force: bool = False) -> None:
        version = await self.db(selectors.routing_version)
        if force or self.app.table is None or version != self.app.table.version:
            snapshot = await self.db(selectors.routing_snapshot)
            self.app.install(RoutingTable(snapshot))
            logger.info("proxy.routing_loaded", version=snapshot.version, slices=len(snapshot.slices))

    async def analyse(self) -> None:
        table = self.app.table
        if table is None:
            return
        for slice_name, figures in self.app.analyzer.evaluate(table):
            change = await self.db(
                services.slice_rollback,
                name=slice_name,
                who=self.identity,
                gate=figures,
                only_from=Phase.CANARY,
                why="automatic rollback: the new backend broke the error-rate or p99 bound "
                f"for {figures['bad_intervals']} intervals",
            )
            if change.audit_id is not None:
                metrics.ROLLBACKS.labels(slice_name).inc()
                logger.error(
                    "proxy.automatic_rollback", slice=slice_name, figures=figures, audit_id=change.audit_id
                )
            await self.refresh(force=True)

    async def flush_shadow(self) -> None:
        batch, self.app.shadow_results = self.app.shadow_results, []
        if batch:
            await self.db(services.shadow_results_record, results=batch)

    async def check_health(self) -> None:
        table = self.app.table
        if table is None:
            return
        targets: dict[tuple[str, int], str] = {}
        backends = [s.legacy for s in table.slices.values()] + [s.new for s in table.slices.values()]
        if table.default_backend is not None:
            backends.append(table.default_backend)
        for backend in backends:
            for address in backend.addresses:
                targets[address] = backend.health_path
        results = await asyncio.gather(*(_probe(address, path) for address, path in targets.items()))
        up: dict[tuple[str, int], bool] = dict(zip(targets, results, strict=True))
        for address, healthy in up.items():
            if healthy:
                self.app.unhealthy.pop(address, None)
            else:
                self.app.unhealthy[address] = time.time() + settings.STRANGLER_HEALTH_INTERVAL * 2
        # A backend is healthy while any of its addresses is; record changes for operators.
        for backend in {b.name: b for b in backends}.values():
            healthy = any(up[a] for a in backend.addresses)
            if self.backend_health.get(backend.name) != healthy:
                self.backend_health[backend.name] = healthy
                await self.db(services.backend_health_record, name=backend.name, healthy=healthy)
                log = logger.info if healthy else logger.error
                log("proxy.backend_health", backend=backend.name, healthy=healthy)

    async def purge_pins(self) -> None:
        self.app.pins.purge(time.time())


async def _probe(address: tuple[str, int], health_path: str) -> bool:
    """A backend address is up when its health path answers 2xx within a second."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), 0.5)
        host = f"{address[0]}:{address[1]}".encode()
        writer.write(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (health_path.encode(), host)
        )
        status_line = await asyncio.wait_for(reader.readline(), 1.0)
        return status_line.split(b" ", 2)[1:2] in ([b"200"], [b"204"])
    except (TimeoutError, OSError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
