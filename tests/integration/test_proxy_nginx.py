"""`manage.py strangler export-nginx`: Debian's nginx, run with the rendered configuration, sends a
sample of requests to the same backends as the built-in proxy (cohorts, methods, overrides, exposure)."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from harness.system_tools import tool_ensure
from harness.waiting import wait_http_ok
from ops.process_group import ManagedProcess, ProcessGroup, free_port
from strangler import services
from tests.integration.proxy_stack import INTERNAL_TOKEN, LOG_DIR, Stack, proxy_caught_up

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]


def request_sample(base_url: str) -> list[tuple[str, int, str]]:
    session = requests.Session()
    seen = []

    def record(label: str, response: requests.Response) -> None:
        seen.append((label, response.status_code, response.headers.get("x-backend-name", "-")))

    for i in range(150):
        record(
            f"read {i}",
            session.get(
                f"{base_url}/shop/api/products/?i={i}",
                headers={"Authorization": f"Bearer nginx-{i}"},
                timeout=5,
            ),
        )
    for i in range(20):
        record(
            f"api key {i}",
            session.get(f"{base_url}/shop/api/orders/", headers={"X-API-Key": f"k{i}"}, timeout=5),
        )
        record(
            f"session {i}",
            session.get(f"{base_url}/shop/api/orders/", cookies={"sessionid": f"s{i}"}, timeout=5),
        )
    record("anonymous", session.get(f"{base_url}/shop/api/products/", timeout=5))
    record(
        "override header",
        session.get(f"{base_url}/shop/api/products/", headers={"X-Strangler-Backend": "new"}, timeout=5),
    )
    record(
        "override cookie",
        session.get(f"{base_url}/shop/api/products/", cookies={"strangler_backend": "legacy"}, timeout=5),
    )
    record("method fall-through", session.post(f"{base_url}/shop/api/products/", json={}, timeout=5))
    record("other path", session.get(f"{base_url}/crm/api/orders/", timeout=5))
    record("internal outside", session.get(f"{base_url}/mes/api/production-orders/", timeout=5))
    record(
        "internal inside",
        session.get(
            f"{base_url}/mes/api/production-orders/",
            headers={"X-Strangler-Internal-Token": INTERNAL_TOKEN},
            timeout=5,
        ),
    )
    for i in range(10):  # writes last: the proxy pins writers to legacy, nginx has no pins
        record(
            f"write {i}",
            session.post(
                f"{base_url}/shop/api/orders/",
                json={},
                headers={"Authorization": f"Bearer writer-{i}"},
                timeout=5,
            ),
        )
    return seen


def test_nginx_with_the_exported_config_routes_like_the_proxy(
    stack_running: Stack, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings.STRANGLER_INTERNAL_TOKEN = INTERNAL_TOKEN
    stack_running.load_plan()
    stack_running.to_phase("catalogue", "canary")
    services.slice_set_weight(name="catalogue", weight=Decimal("37.5"), who="test")
    services.slice_set_shadow(name="catalogue", enabled=True, sample_rate=0.5, who="test")
    proxy_caught_up(stack_running.proxy_url)
    port = free_port()
    config = tmp_path / "nginx.conf"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / sub).mkdir(parents=True)
    out = StringIO()
    call_command(
        "strangler", "export-nginx", "--listen", f"127.0.0.1:{port}", "--output", str(config), stdout=out
    )
    binary = tool_ensure("nginx", package="nginx")
    check = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr + config.read_text()
    with ProcessGroup() as group:
        nginx = group.start(
            ManagedProcess(
                "nginx",
                [binary, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"],
                {},
                LOG_DIR / f"proxy-nginx-{port}.log",
            )
        )
        wait_http_ok(f"http://127.0.0.1:{port}/crm/api/orders/", seconds=15, process=nginx.popen)
        through_nginx = request_sample(f"http://127.0.0.1:{port}")
        # Like the proxy, nginx keeps the proxy's own cookies from the backends.
        for cookies, expected in (
            (
                "strangler_sessionid=a; sessionid=s; strangler_csrftoken=c; cart=3; strangler_backend=t; "
                "strangler_pin=1",
                "sessionid=s; cart=3",
            ),
            ("sessionid=s; cart=3", "sessionid=s; cart=3"),
        ):
            echoed = requests.get(
                f"http://127.0.0.1:{port}/echo/cookies", headers={"Cookie": cookies}, timeout=5
            ).json()["headers"]
            assert echoed.get("cookie") == expected, echoed
        echoed = requests.get(
            f"http://127.0.0.1:{port}/echo/cookies", headers={"Cookie": "strangler_pin=1"}, timeout=5
        ).json()["headers"]
        assert "cookie" not in echoed, echoed
    through_proxy = request_sample(stack_running.proxy_url)
    differences = [(a, b) for a, b in zip(through_proxy, through_nginx, strict=True) if a != b]
    assert differences == [], differences[:10]
    backends = {backend for label, _, backend in through_proxy if label.startswith("read")}
    assert backends == {"new", "legacy"}  # the sample really exercises both sides of the split
    assert ("internal outside", 403, "-") in through_proxy
