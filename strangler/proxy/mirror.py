"""The shadow mirror: after the customer's answer went out, the same read goes to the new backend and
the two answers are compared (shadow.py); results are flushed to the control database in batches by
a background loop. Bounded by the number of mirrors in flight and the bytes kept per answer."""

from __future__ import annotations

import asyncio
from typing import Any

from strangler.proxy import metrics
from strangler.proxy.request import ProxyRequest
from strangler.proxy.routing import NEW, Decision
from strangler.proxy.shadow import responses_compare
from strangler.proxy.upstream import UpstreamError
from strangler.proxy.upstream_client import UpstreamClient
from strangler.services import ShadowResult

Answer = tuple[int, dict[str, str], bytes]


class ShadowMirror:
    def __init__(self, *, client: UpstreamClient, max_in_flight: int, max_body: int) -> None:
        self.client = client
        self.max_in_flight = max_in_flight
        self.max_body = max_body  # legacy answers above this are not compared
        self.in_flight = 0
        self.results: list[ShadowResult] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def wants(self, decision: Decision) -> bool:
        return decision.shadow and self.in_flight < self.max_in_flight

    def start(self, decision: Decision, request: ProxyRequest, legacy_answer: Answer) -> None:
        task = asyncio.get_running_loop().create_task(self._compare(decision, request, legacy_answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _compare(self, decision: Decision, request: ProxyRequest, legacy_answer: Answer) -> None:
        slice_ = decision.route.slice
        assert slice_ is not None
        self.in_flight += 1
        path = request.target.decode(errors="replace")
        mirror = Decision(decision.route, NEW, slice_.new, reason="shadow")
        try:
            conn = await self.client.send(request, mirror.backend)
            parts = []
            while (chunk := await conn.next_chunk()) is not None:
                parts.append(chunk)
            conn.finish()
            new_answer = (
                conn.status,
                {n.decode(errors="replace"): v.decode(errors="replace") for n, v in conn.headers},
                b"".join(parts),
            )
            differences = responses_compare(
                path=path.split("?", 1)[0],
                legacy=legacy_answer,
                new=new_answer,
                compare_headers=slice_.shadow_compare_headers,
                ignore=slice_.shadow_ignore,
            )
            result = ShadowResult(slice_.name, decision.route.name, request.method, path, differences)
            metrics.SHADOW.labels(
                decision.route.name, slice_.name, "differ" if differences else "match"
            ).inc()
        except UpstreamError as exc:
            result = ShadowResult(
                slice_.name, decision.route.name, request.method, path, [str(exc)], failed=True
            )
            metrics.SHADOW.labels(decision.route.name, slice_.name, "failed").inc()
        finally:
            self.in_flight -= 1
        self.results.append(result)
