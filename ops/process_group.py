"""Starts, watches and stops the project's child processes (web, workers, scheduler, engines).

Used by `manage.py demo`, the integration tests and the benchmarks, so that all three start the
processes the same way and never leave one behind: every child gets its own process group and is
terminated (then killed) when the group closes, also on Ctrl-C. Which processes a service has is
the service's to say (the SERVICE_PROCESSES setting); this module knows no service.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

import structlog

logger = structlog.get_logger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# granian's own lines (startup, workers, shutdown) as JSON, like every other line (ops/logs.py).
GRANIAN_LOG_CONFIG = PROJECT_ROOT / "config" / "granian_logging.json"


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM when its parent dies, so a
    killed test run or demo (even kill -9) does not leave servers or engines behind."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _child_setup(nice: int) -> Callable[[], None]:
    def setup() -> None:
        _die_with_parent()
        if nice:
            os.nice(nice)

    return setup


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


def manage_command(*args: str) -> list[str]:
    return python_command(str(PROJECT_ROOT / "manage.py"), *args)


def bin_command(name: str, *args: str) -> list[str]:
    """A console script installed next to the running interpreter (the virtualenv's bin/)."""
    return [str(Path(sys.executable).parent / name), *args]


@dataclass
class ManagedProcess:
    name: str
    command: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    # Added to the child's niceness: background work (engines, consumers, relays) started beside
    # the processes that answer requests on one small machine yields the CPU to them.
    nice: int = 0
    popen: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        environment = {**os.environ, **self.env}
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.popen = subprocess.Popen(
            list(self.command),
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_child_setup(self.nice),
        )
        logger.debug("process.started", name=self.name, pid=self.popen.pid, nice=self.nice)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Sends `signum` to the whole process group (a server and its workers)."""
        if self.alive():
            try:
                os.killpg(self.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, *, timeout: float = 10.0) -> int | None:
        if self.popen is None:
            return None
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(timeout=5)
        else:
            self.signal(signal.SIGKILL)  # reap children a dead leader may have left
        logger.debug("process.stopped", name=self.name, returncode=self.popen.returncode)
        return self.popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class ProcessGroup:
    """A set of processes that stop together, in reverse order of start."""

    processes: list[ManagedProcess] = field(default_factory=list)

    def start(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process.start())
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def database_env(settings_databases: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    """Environment that points a child process at the same databases as this process.

    Each alias maps to its logical name through DATABASE_NAMES, so a test process (whose database
    names are the test ones) hands its children the test databases.
    """
    from django.conf import settings

    from config.routers import database_alias

    env: dict[str, str] = {}
    for logical in settings.DATABASE_NAMES:
        alias = database_alias(logical)
        config = settings_databases[alias]
        user = config.get("USER") or ""
        password = f":{config['PASSWORD']}" if config.get("PASSWORD") else ""
        env[f"{logical.upper()}_DATABASE_URL"] = (
            f"postgres://{user}{password}@{config['HOST']}:{config['PORT']}/{config['NAME']}"
        )
    return env


def granian_wsgi_command(
    *, application: str, port: int, workers: int = 1, blocking_threads: int = 1
) -> list[str]:
    """A WSGI web server for `application` ("module:callable") on 127.0.0.1:port; a service whose
    requests wait on other services over HTTP gives each worker several `blocking_threads`."""
    return bin_command(
        "granian",
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(blocking_threads),
        "--no-ws",
        "--log-level",
        "warning",
        "--log-config",
        str(GRANIAN_LOG_CONFIG),
        application,
    )


def celery_worker_command(*, app: str, queues: Sequence[str], concurrency: int = 2) -> list[str]:
    """A Celery worker of `app` consuming `queues`."""
    return bin_command(
        "celery",
        "-A",
        app,
        "worker",
        "-Q",
        ",".join(queues),
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    )


def celery_beat_command(*, app: str, tag: str) -> list[str]:
    """Celery beat of `app`; `tag` names its schedule file, so that two schedulers never share one."""
    schedule = PROJECT_ROOT / ".local" / f"celerybeat-schedule-{tag}"
    return bin_command("celery", "-A", app, "beat", "--loglevel", "WARNING", "--schedule", str(schedule))


class ProcessCommands(Protocol):
    """What a service registers in SERVICE_PROCESSES: its processes by name ("web", ...), the web
    one listening on `port`."""

    def __call__(self, *, port: int, web_workers: int = 1) -> dict[str, list[str]]: ...


class UnknownService(LookupError):
    """SERVICE_PROCESSES registers no process commands for the service."""


def service_process_commands(service: str, *, port: int, web_workers: int = 1) -> dict[str, list[str]]:
    """The processes of `service`, from the "module:function" the SERVICE_PROCESSES setting names:
    the system being migrated says how it runs; this module only starts and stops what it says."""
    from django.conf import settings

    registered: Mapping[str, str] = getattr(settings, "SERVICE_PROCESSES", {})
    if service not in registered:
        raise UnknownService(
            f"SERVICE_PROCESSES registers no processes for {service!r} (registered: {sorted(registered)})"
        )
    module_name, _, attribute = registered[service].partition(":")
    commands: ProcessCommands = getattr(importlib.import_module(module_name), attribute)
    return commands(port=port, web_workers=web_workers)
