"""Background loops of a proxy process, the only places that touch the control database: poll the
routing version and reload the table on change, run canary analysis and roll back, flush shadow
results, and check backend health.

Django's ORM is synchronous, so every database call runs on one dedicated thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from django.conf import settings
from django.db import close_old_connections

from strangler import selectors, services
from strangler.models import Phase
from strangler.proxy import metrics
from strangler.proxy.routing import RoutingTable

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
        self.backend_health: dict[str, bool] = {}

    async def db(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, lambda: _with_fresh_connection(function, *args, **kwargs)
        )

    async def start(self) -> None:
        await self.refresh(force=True)
        for loop_function, interval in (
            (self.refresh, settings.STRANGLER_POLL_INTERVAL),
            (self.analyse, settings.STRANGLER_ANALYSIS_INTERVAL),
            (self.flush_shadow, 1.0),
            (self.check_health, settings.STRANGLER_HEALTH_INTERVAL),
            (self.purge_pins, 10.0),
        ):
            self.tasks.append(asyncio.get_running_loop().create_task(self._every(loop_function, interval)))
        logger.info("proxy.started", routing_version=self.app.table.version if self.app.table else None)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.flush_shadow()
        self.executor.shutdown(wait=True)

    async def _every(self, function: Callable[[], Any], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await function()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("proxy.background_failed", loop=getattr(function, "__name__", "?"))

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
