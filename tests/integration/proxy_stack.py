"""Processes and helpers shared by the proxy's integration tests: controllable backends, proxy
processes, plan loading that waits until the proxy routes with it, and a small load loop.

Load against the real monolith comes from `manage.py traffic` (test_proxy_traffic.py). The load loop
is kept for the tests whose backends are the small controllable ones: the traffic command checks
the monolith's answers (201 with an order id, staff and partner bodies) and reads its credentials from
a seeded database, so it cannot drive a backend that only echoes; and a test of the rollback needs
a new backend that can be told to fail, which the monolith cannot.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from harness.proxy_plan import plan_route, plan_slice, plan_text
from harness.waiting import wait_http_ok, wait_until
from ops.process_group import (
    ManagedProcess,
    ProcessGroup,
    free_port,
    manage_command,
    python_command,
)
from strangler import services
from strangler.plan import plan_parse
from strangler.selectors import routing_version

LOG_DIR = Path(__file__).resolve().parent.parent.parent / ".local" / "test-logs"
INTERNAL_TOKEN = "test-internal-token"
STAFF_PASSWORD = "proxy-staff-password"


def stack_plan(*, legacy_url: str, new_url: str) -> str:
    """The plan of the controllable-backend tests: a catalogue slice with every phase setting the
    tests exercise, and an internal production slice."""
    return plan_text(
        backends={"legacy": legacy_url, "new": new_url},
        slices={
            "catalogue": plan_slice(
                service="new",
                routes=[
                    plan_route("products", "/shop/api/products/", methods=["GET", "HEAD"]),
                    plan_route("orders", "/shop/api/orders/", methods=["GET", "POST"]),
                    plan_route("echo", "/echo/"),
                ],
                shadow={
                    "sample_rate": 1.0,
                    "compare_headers": ["content-type"],
                    "ignore": {"/shop/api/": ["id", "generated_at"]},
                },
                canary={"pin_after_write_seconds": 1.5},
                rollback={"intervals": 2, "min_interval_requests": 5, "max_error_rate_delta": 0.05},
            ),
            "production": plan_slice(
                service="new",
                routes=[plan_route("production-orders", "/mes/api/production-orders/", exposure="internal")],
            ),
        },
    )


def backend_start(group: ProcessGroup, name: str, port: int | None = None) -> tuple[ManagedProcess, str]:
    port = port or free_port()
    process = group.start(
        ManagedProcess(
            f"backend-{name}",
            python_command("-m", "strangler.testing_backend", "--name", name, "--port", str(port)),
            {},
            LOG_DIR / f"proxy-backend-{name}-{port}.log",
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/healthz", seconds=20, process=process.popen)
    return process, url


def as_the_readme_says(env: dict[str, str]) -> dict[str, str]:
    """`env` for a `manage.py strangler ...` child, as the README has a user run it: with no SERVICE,
    so manage.py picks the proxy's."""
    child = {name: value for name, value in env.items() if name != "SERVICE"}
    if "SERVICE" in os.environ:  # a child inherits this shell's; it cannot be unset, only named
        child["SERVICE"] = "proxy"
    return child


def proxy_start(
    group: ProcessGroup, env: dict[str, str], tag: str, overrides: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """`manage.py strangler serve` as the README has a user start it: no SERVICE in its environment
    (manage.py picks the proxy's), the databases and settings from `env`."""
    port = free_port()
    proxy_env = {
        **as_the_readme_says(env),
        "STRANGLER_ANALYSIS_INTERVAL": "0.5",
        "STRANGLER_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "STRANGLER_MAX_BODY_BYTES": "65536",
        "STRANGLER_READ_TIMEOUT": "2",
        "LOG_LEVEL": "INFO",
        **(overrides or {}),
    }
    process = group.start(
        ManagedProcess(
            f"proxy-{tag}",
            manage_command("strangler", "serve", "--port", str(port)),
            proxy_env,
            LOG_DIR / f"proxy-{tag}-{port}.log",
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/_strangler/healthz", seconds=30, process=process.popen)
    return process, url


MONOLITH_PLAN_BACKENDS = ("LEGACY_URL", "SHOP_URL", "CRM_URL", "MES_PRICING_URL", "MES_PRODUCTION_URL")


def shipped_plan_load(env: dict[str, str], backends: dict[str, str], *, why: str) -> str:
    """`manage.py strangler load-plan` with no path, as the README runs it: the repository's plan,
    its backends at `backends` (variable -> URL; `monolith_everywhere(url)` puts the monolith behind
    every one). Returns what it printed."""
    loaded = subprocess.run(
        manage_command("strangler", "load-plan", "--why", why),
        env={**os.environ, **as_the_readme_says(env), **backends},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    return loaded.stdout


def monolith_everywhere(url: str) -> dict[str, str]:
    """Every backend of the shipped plan at the monolith (no extracted service runs)."""
    return dict.fromkeys(MONOLITH_PLAN_BACKENDS, url)


def proxy_staff_token(username: str = "proxy-staff") -> str:
    """A staff user of the proxy (a superuser, password STAFF_PASSWORD) and its API token. The
    proxy's users live in its own database, `control`, not in the monolith's."""
    user, _ = (
        get_user_model()
        .objects.db_manager("control")
        .get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
    )
    user.set_password(STAFF_PASSWORD)
    user.save(using="control")
    return Token.objects.using("control").get_or_create(user=user)[0].key


def proxy_routing(proxy_url: str) -> dict:
    return requests.get(
        f"{proxy_url}/_strangler/routing", headers={"X-Strangler-Internal-Token": INTERNAL_TOKEN}, timeout=5
    ).json()


def proxy_metrics_text(proxy_url: str) -> str:
    """The proxy's own /_strangler/metrics, read as its scraper does: as an internal caller."""
    response = requests.get(
        f"{proxy_url}/_strangler/metrics", headers={"X-Strangler-Internal-Token": INTERNAL_TOKEN}, timeout=5
    )
    response.raise_for_status()
    return response.text


def proxy_caught_up(*proxy_urls: str) -> None:
    """Waits until every proxy routes with the control database's current version."""
    version = routing_version()
    wait_until(
        lambda: all(proxy_routing(u)["version"] == version for u in proxy_urls),
        seconds=5,
        interval=0.02,
        what=f"proxies routing with version {version}",
    )


@dataclass
class Stack:
    group: ProcessGroup
    env: dict[str, str]
    legacy: ManagedProcess
    legacy_url: str
    new: ManagedProcess
    new_url: str
    proxy: ManagedProcess
    proxy_url: str

    def reset(self) -> None:
        """Both backends healthy, fast and alike, and the test plan loaded again."""
        for url in (self.legacy_url, self.new_url):
            self.backend_mode(url, fail_rate=0, delay_ms=0, diverge=False)
        self.load_plan()

    def load_plan(self) -> None:
        services.plan_apply(
            plan=plan_parse(stack_plan(legacy_url=self.legacy_url, new_url=self.new_url)), who="test"
        )
        proxy_caught_up(self.proxy_url)

    def to_phase(self, slice_name: str, phase: str) -> None:
        from strangler.models import PHASE_ORDER, Slice

        while (current := Slice.objects.using("control").get(name=slice_name).phase) != phase:
            assert PHASE_ORDER.index(current) < PHASE_ORDER.index(phase)
            services.slice_promote(name=slice_name, who="test", force=True, why="test setup")
        proxy_caught_up(self.proxy_url)

    def backend_mode(self, url: str, **mode: Any) -> None:
        requests.post(f"{url}/_control/mode", json=mode, timeout=5).raise_for_status()

    def restart_new(self) -> None:
        port = int(self.new_url.rsplit(":", 1)[1])
        self.new.stop()
        self.new, _ = backend_start(self.group, "new", port)


def stack_start(group: ProcessGroup, env: dict[str, str]) -> Stack:
    legacy, legacy_url = backend_start(group, "legacy")
    new, new_url = backend_start(group, "new")
    proxy, proxy_url = proxy_start(group, env, "main")
    return Stack(group, env, legacy, legacy_url, new, new_url, proxy, proxy_url)


@dataclass
class LoadLoop:
    """Customers reading (and some writing) through the proxy on a few threads until stopped; it
    records which backend answered each request from the controllable backends' x-backend-name."""

    url: str
    paths: list[str]
    customers: int = 50
    threads: int = 4
    write_path: str | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    backends: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, index: int) -> None:
        session = requests.Session()
        n = index
        deadline = time.monotonic() + 120  # bounded even if a test forgets to stop it
        while not self._stop.is_set() and time.monotonic() < deadline:
            n += self.threads
            customer = f"Bearer load-{n % self.customers}"
            try:
                if self.write_path and n % 10 == 0:
                    response = session.post(
                        self.url + self.write_path,
                        json={"n": n},
                        headers={"Authorization": customer},
                        timeout=10,
                    )
                else:
                    response = session.get(
                        self.url + self.paths[n % len(self.paths)],
                        headers={"Authorization": customer},
                        timeout=10,
                    )
                with self._lock:
                    self.statuses[response.status_code] += 1
                    self.backends[response.headers.get("x-backend-name", "?")] += 1
                    if response.status_code >= 400:
                        self.errors.append(f"{response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                with self._lock:
                    self.errors.append(repr(exc))

    def __enter__(self) -> LoadLoop:
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())
