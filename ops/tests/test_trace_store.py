"""The OTLP/HTTP receiver takes what the OpenTelemetry SDK's own exporter sends over the wire, stores
each span once, and prints one trace as a tree with its parent links and failures."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from ops import trace_store, tracing


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    path = tmp_path / "spans.jsonl"
    store = trace_store.SpanFile(path)
    server = trace_store.make_server("127.0.0.1", 0, store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", path
    finally:
        server.shutdown()
        server.server_close()
        store.close()


def test_sdk_spans_arrive_as_one_tree_with_failures_marked(receiver: tuple[str, Path]) -> None:
    url, path = receiver
    provider = TracerProvider(resource=Resource.create({"service.name": "legacy", "process.role": "web"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=url)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /crm/orders/7/confirm", kind=SpanKind.SERVER) as root:
        root.set_attribute("order.id", 7)
        with tracer.start_as_current_span("UPDATE", kind=SpanKind.CLIENT):
            pass
        with tracer.start_as_current_span("publish shop.order.confirmed", kind=SpanKind.PRODUCER) as failing:
            try:
                raise ConnectionError("broker gone")
            except ConnectionError as error:
                tracing.record_failure(failing, error)
    provider.shutdown()

    spans = trace_store.read_spans(path)
    assert len(spans) == 3
    (trace_id,) = trace_store.trace_ids_with(spans, "order.id", "7")
    (root_node,) = trace_store.trace_tree(spans, trace_id)
    assert root_node.span["name"] == "POST /crm/orders/7/confirm"
    assert root_node.span["service"] == "legacy" and root_node.span["role"] == "web"
    assert [child.span["name"] for child in root_node.children] == ["UPDATE", "publish shop.order.confirmed"]
    assert all(child.span["parent_span_id"] == root_node.span["span_id"] for child in root_node.children)
    failed = root_node.children[1].span
    assert failed["status"] == "error" and "broker gone" in failed["status_message"]
    assert failed["events"][0]["name"] == "exception"
    lines = trace_store.render_tree([root_node])
    assert "ERROR ConnectionError: broker gone" in lines[2]
    assert lines[1].index("UPDATE") > lines[0].index("POST")  # indented under its parent


def test_a_body_that_is_not_an_export_request_is_refused(receiver: tuple[str, Path]) -> None:
    url, path = receiver
    request = urllib.request.Request(url, data=b"\xff\x00 not protobuf", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert trace_store.read_spans(path) == []


def test_traceparent_round_trip_and_malformed_values_start_no_parent() -> None:
    parent = tracing.context_from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert parent is not None
    zero_trace = "00-" + "0" * 32 + "-b7ad6b7169203331-01"
    for bad in ("", "junk", zero_trace, "01-0af7651916cd43dd8448eb211c80319c-x-01"):
        assert tracing.context_from_traceparent(bad) is None
    with tracing.continued("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"):
        assert tracing.current_traceparent() == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert tracing.current_traceparent() == ""
