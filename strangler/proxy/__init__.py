"""The data plane: an ASGI reverse proxy that routes each request to legacy or the new service.

Why this shape (measured on the 2-core development machines; bench/proxy.py measures it again):
uvicorn (uvloop, httptools, with the read deadlines and JSON errors of protocol.py) serves the ASGI
app; upstream calls go through our own keep-alive pool of asyncio protocols parsed by httptools
(upstream.py), because an aiohttp client cost about twice the CPU per request and httpx about twenty
times. The hot path reads only in-memory structures (header_policy.py, routing.py, cohort.py,
pins.py); all control-database work runs in background loops (control_sync.py). Against a trivial
backend the proxy adds about 0.1 ms at p50 when the machine is calm; against the real legacy
catalogue API its throughput was 0.65-0.91 of direct and 0.85-1.12 of nginx across runs on a shared,
loaded machine, costing about 2.3 times nginx's CPU per request. A socket-level proxy (no ASGI) would
cost less CPU (measured: 38 us against 91 us per request) but would have to re-implement an HTTP
server's edge cases; it is the next step if the proxy's CPU share becomes the limit.
"""
