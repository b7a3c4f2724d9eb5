"""A small OTLP/HTTP trace receiver for development, tests and the demo, and the trace tree it prints.

No trace backend (Jaeger, Tempo, the Collector) installs on these machines, so the toolkit carries
this one: it decodes OTLP/HTTP protobuf (what the SDK's exporter sends) with opentelemetry-proto
and appends one JSON line per span to a file. `trace_tree()` turns
the spans of one trace into the indented tree `manage.py observability traces show` prints.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

MAX_BODY = 16 * 1024 * 1024
STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}
KIND_NAMES = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def spans_of(request: ExportTraceServiceRequest) -> Iterator[dict[str, Any]]:
    """Each span of an OTLP export request as a plain dict (ids in lowercase hex)."""
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                links = span.links
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": KIND_NAMES.get(span.kind, str(span.kind)),
                    "service": resource.get("service.name", ""),
                    "role": resource.get("process.role", ""),
                    "pid": resource.get("process.pid"),
                    "scope": scope_spans.scope.name,
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "status": STATUS_NAMES.get(span.status.code, str(span.status.code)),
                    "status_message": span.status.message,
                    "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                    "events": [
                        {"name": e.name, "attributes": {kv.key: _value(kv.value) for kv in e.attributes}}
                        for e in span.events
                    ],
                    "links": [{"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex()} for ln in links],
                }


class SpanFile:
    """Spans appended as JSON lines; one writer lock, a flush after each export request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out: BinaryIO = path.open("ab")

    def append(self, spans: Iterable[dict[str, Any]]) -> int:
        lines = b"".join(json.dumps(s, separators=(",", ":")).encode() + b"\n" for s in spans)
        with self._lock:
            self._out.write(lines)
            self._out.flush()
        return lines.count(b"\n")

    def close(self) -> None:
        self._out.close()


def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    spans = []
    with path.open("rb") as lines:
        for line in lines:
            if line.endswith(b"\n"):  # a line being written is not read half
                spans.append(json.loads(line))
    return spans


def make_server(host: str, port: int, store: SpanFile) -> ThreadingHTTPServer:
    """An HTTP server answering POST /v1/traces as an OTLP/HTTP (protobuf) endpoint does."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/v1/traces":
                self._answer(404, b"")
                return
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_BODY:
                self._answer(400 if not length.isdigit() else 413, b"")
                return
            body = self.rfile.read(int(length))
            if "gzip" in self.headers.get("Content-Encoding", ""):
                import gzip

                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except DecodeError:
                self._answer(400, b"")
                return
            store.append(spans_of(request))
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

        def do_GET(self) -> None:
            self._answer(200 if self.path == "/healthz" else 404, b"")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per export request would drown the process's JSON logs

    return ThreadingHTTPServer((host, port), Handler)


@dataclass
class Node:
    span: dict[str, Any]
    children: list[Node] = field(default_factory=list)


def trace_ids_with(spans: Iterable[dict[str, Any]], attribute: str, value: str) -> list[str]:
    """Trace ids (first seen first) of the traces holding a span whose `attribute` equals `value`."""
    found: dict[str, None] = {}
    for span in spans:
        if str(span["attributes"].get(attribute)) == value:
            found[span["trace_id"]] = None
    return list(found)


def trace_tree(spans: Iterable[dict[str, Any]], trace_id: str) -> list[Node]:
    """The roots of one trace (spans whose parent is not among its spans), children by start time."""
    own = sorted((s for s in spans if s["trace_id"] == trace_id), key=lambda s: s["start_ns"])
    nodes = {s["span_id"]: Node(s) for s in own}
    roots: list[Node] = []
    for node in nodes.values():
        parent = nodes.get(node.span["parent_span_id"])
        (parent.children if parent else roots).append(node)
    return roots


def render_tree(roots: list[Node]) -> list[str]:
    """One line per span: offset from the trace's start, duration, service/role, name, status."""
    if not roots:
        return []
    start = min(n.span["start_ns"] for n in roots)
    lines: list[str] = []

    def walk(node: Node, depth: int) -> None:
        span = node.span
        offset_ms = (span["start_ns"] - start) / 1e6
        took_ms = (span["end_ns"] - span["start_ns"]) / 1e6
        where = span["service"] + (f"/{span['role']}" if span["role"] else "")
        failed = f"  ERROR {span['status_message']}" if span["status"] == "error" else ""
        indent = "  " * depth
        lines.append(f"{offset_ms:9.1f} ms {took_ms:9.1f} ms  {indent}{span['name']}  [{where}]{failed}")
        for child in node.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return lines
