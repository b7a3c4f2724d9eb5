"""The OTLP/HTTP trace receiver as tests and benchmarks run it: `manage.py observability traces
receive` in a process of its own, as the README has a user start it, and the spans it stored.

    with ProcessGroup() as group:
        receiver = trace_receiver_start(group, tmp_path / "spans.jsonl")
        env = {**env, **receiver.env}            # what a traced child process needs
        ...
        span = receiver.wait_for(lambda s: s["name"] == "proxy products", what="the proxy span")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.waiting import wait_port, wait_until
from ops import trace_store
from ops.process_group import ManagedProcess, ProcessGroup, free_port, manage_command

Span = dict[str, Any]


@dataclass
class TraceReceiver:
    process: ManagedProcess
    port: int
    path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """OTEL_* for a child process that exports here, sampling everything, exporting quickly."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }

    def spans(self) -> list[Span]:
        return trace_store.read_spans(self.path)

    def matching(self, predicate: Callable[[Span], bool]) -> list[Span]:
        return [span for span in self.spans() if predicate(span)]

    def wait_for(self, predicate: Callable[[Span], bool], *, what: str, seconds: float = 20.0) -> Span:
        """The first stored span `predicate` accepts, waiting until the exporters sent it."""
        found: list[Span] = []

        def arrived() -> bool:
            found[:] = self.matching(predicate)
            return bool(found)

        wait_until(arrived, seconds=seconds, interval=0.1, what=what, process=self.process)
        return found[0]

    def trace(self, trace_id: str) -> list[Span]:
        return self.matching(lambda span: span["trace_id"] == trace_id)


def trace_receiver_start(
    group: ProcessGroup, path: Path, *, env: dict[str, str] | None = None
) -> TraceReceiver:
    """Starts the receiver (in `group`, so it stops with it) writing to `path`; returns once it listens."""
    port = free_port()
    log = path.with_suffix(".receiver.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    process = group.start(
        ManagedProcess(
            "trace-receiver",
            manage_command("observability", "traces", "receive", "--port", str(port), "--file", str(path)),
            # The receiver traces nothing itself (its spans would land in its own file).
            {**(env or {}), "OTEL_SDK_DISABLED": "true"},
            log,
        )
    )
    wait_port(port, seconds=30, process=process)
    return TraceReceiver(process=process, port=port, path=path)
