"""Sends a Scenario's requests over aiohttp, open loop (a fixed arrival rate) or closed loop (N
users back to back), and records what each request got into a TrafficSummary."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
import uuid
from collections.abc import Callable

import aiohttp

from legacy.traffic.pacing import arrival_offsets
from legacy.traffic.scenarios import PlannedRequest
from legacy.traffic.stats import TrafficSummary


class TrafficRunner:
    def __init__(
        self,
        *,
        base_url: str,
        next_request: Callable[[], PlannedRequest],
        concurrency: int = 100,
        timeout: float = 10.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.next_request = next_request
        self.concurrency = concurrency
        self.timeout = timeout
        self._run_tag = f"traffic-{uuid.uuid4().hex[:8]}"
        self._sequence = itertools.count()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Stops sending new requests; the ones in flight finish and the summary is kept."""
        self._stop.set()

    async def open_loop(self, *, rate: float, duration: float) -> TrafficSummary:
        summary = TrafficSummary(base_url=self.base_url, mode="open", target_rate=rate)
        async with self._session() as session, self._interruptible():
            loop = asyncio.get_running_loop()
            slots = asyncio.Semaphore(self.concurrency)
            in_flight: set[asyncio.Task[None]] = set()
            start, cpu_start = loop.time(), time.process_time()
            for offset in arrival_offsets(rate=rate, duration=duration):
                due = start + offset
                delay = due - loop.time()
                if delay > 0 and await self._stopped_within(delay):
                    break
                if self._stop.is_set():
                    break
                await slots.acquire()
                # How late the generator itself is; latency counts from `due`, so a generator
                # that falls behind shows as latency, not as a lower rate.
                summary.max_dispatch_lag_ms = max(summary.max_dispatch_lag_ms, (loop.time() - due) * 1000)
                task = asyncio.create_task(self._send(session, summary, due, slots))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.gather(*in_flight)
            summary.duration_s = max(loop.time() - start, 1e-9)
            summary.generator_cpu_s = time.process_time() - cpu_start
        return summary

    async def closed_loop(self, *, users: int, duration: float) -> TrafficSummary:
        """`users` virtual users, each sending its next request as soon as the last one answered."""
        summary = TrafficSummary(base_url=self.base_url, mode="closed", target_rate=0.0)
        async with self._session() as session, self._interruptible():
            loop = asyncio.get_running_loop()
            start, cpu_start = loop.time(), time.process_time()
            end = start + duration

            async def user() -> None:
                while loop.time() < end and not self._stop.is_set():
                    await self._send(session, summary, loop.time(), None)

            await asyncio.gather(*(user() for _ in range(users)))
            summary.duration_s = max(loop.time() - start, 1e-9)
            summary.generator_cpu_s = time.process_time() - cpu_start
        return summary

    async def _stopped_within(self, seconds: float) -> bool:
        if self._stop.is_set():
            return True
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            skip_auto_headers=("User-Agent",),
        )

    def _interruptible(self) -> _SignalStop:
        return _SignalStop(self)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        summary: TrafficSummary,
        due: float,
        slots: asyncio.Semaphore | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        planned = self.next_request()
        headers = {**planned.headers, "X-Request-ID": f"{self._run_tag}-{next(self._sequence)}"}
        status, error, detail = "-", None, ""
        try:
            async with session.request(
                planned.method, self.base_url + planned.path, data=planned.body, headers=headers
            ) as response:
                body = await response.read()
                status = str(response.status)
                error = planned.classify(response.status, body)
                if error:
                    detail = f"{response.status} {planned.path}: {body[:200].decode(errors='replace')}"
                elif planned.absorb:
                    try:
                        planned.absorb(response.status, body)
                    except (ValueError, KeyError, TypeError) as exc:
                        error = "bad_body"
                        detail = f"{response.status} {planned.path}: {type(exc).__name__}: {exc}"
        except TimeoutError:
            error, detail = "timeout", f"{planned.path}: no answer within {self.timeout} s"
        except (aiohttp.ClientError, OSError) as exc:
            error, detail = "connection", f"{planned.path}: {type(exc).__name__}: {exc}"
        finally:
            if slots is not None:
                slots.release()
        summary.record(
            route=planned.route,
            role=planned.role,
            latency_ms=(loop.time() - due) * 1000,
            status=status,
            error=error,
            detail=detail,
        )


class _SignalStop:
    """While active, Ctrl-C (SIGINT) or SIGTERM stops sending instead of killing the run, so the
    summary of what was sent is still printed."""

    def __init__(self, runner: TrafficRunner) -> None:
        self.runner = runner
        self.installed: list[int] = []

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self.runner.stop)
                self.installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread: the caller stops the run another way

    async def __aexit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in self.installed:
            loop.remove_signal_handler(signum)
