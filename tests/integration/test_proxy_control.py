"""The control plane from outside: operator commands from separate processes, and the proxy
process (started as the README says) answering its health, staff API, admin and static files."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.db import OperationalError, connections, transaction

from harness.proxy_plan import plan_route, plan_slice, plan_text
from harness.waiting import wait_until
from ops.process_group import ProcessGroup, manage_command
from strangler import services
from strangler.models import AuditEntry, Slice
from strangler.plan import plan_parse
from strangler.tests.test_control_plane import PLAN
from tests.conftest import LegacyStack
from tests.integration.proxy_stack import (
    STAFF_PASSWORD,
    as_the_readme_says,
    proxy_caught_up,
    proxy_staff_token,
    proxy_start,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]


def test_two_operators_at_once_are_serialised_and_both_audited(live_env: dict[str, str]) -> None:
    services.plan_apply(plan=plan_parse(PLAN), who="setup")
    for _ in range(3):
        services.slice_promote(name="catalogue", who="setup", force=True, why="to canary")
    env = {**as_the_readme_says(live_env), "STRANGLER_OPERATOR": "alice"}
    first = subprocess.Popen(
        manage_command("strangler", "weight", "catalogue", "10", "--why", "step 1", "--hold-lock", "6"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(slice_row_locked, seconds=30)  # alice holds the slice row now
        locked_at = time.time()
        second = subprocess.run(
            manage_command("strangler", "weight", "catalogue", "20", "--why", "step 2"),
            env={**env, "STRANGLER_OPERATOR": "bob"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        first_out, _ = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, (first_out, second.stdout, second.stderr)
    entries = list(AuditEntry.objects.using("control").filter(action="weight").order_by("id"))
    # bob started while alice held the lock, waited for her commit and saw her weight as his "from".
    assert [(e.who, e.from_state["canary_weight"], e.to_state["canary_weight"]) for e in entries] == [
        ("alice", "0.00", "10.00"),
        ("bob", "10.00", "20.00"),
    ]
    # The row was locked during alice's hold (long before her commit), not just while she wrote.
    assert entries[0].at.timestamp() - locked_at > 2.0
    assert entries[0].at <= entries[1].at


def slice_row_locked() -> bool:
    try:
        with transaction.atomic(using="control"), connections["control"].cursor() as cursor:
            cursor.execute("SELECT 1 FROM strangler_slice WHERE name = %s FOR UPDATE NOWAIT", ["catalogue"])
        return False
    except OperationalError:
        return True


def test_invalid_plan_file_is_rejected_with_the_bad_fields_path(
    live_env: dict[str, str], tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        PLAN.replace("methods: [GET, HEAD]", "methods: [GET, YEET]").replace(
            "version: 1", "version: 1\nextra: 1"
        )
    )
    result = subprocess.run(
        manage_command("strangler", "load-plan", str(plan)),
        env=as_the_readme_says(live_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "plan.slices.catalogue.routes[0].methods[1]: 'YEET' is not one of" in result.stderr
    assert "plan.extra: unknown field" in result.stderr
    assert not AuditEntry.objects.using("control").exists()


@pytest.fixture(scope="module")
def proxy_url(live_env: dict[str, str]) -> Iterator[str]:
    with ProcessGroup() as group:
        _, url = proxy_start(group, live_env, "control")
        yield url


def test_the_proxy_serves_its_own_health_under_its_own_service(proxy_url: str) -> None:
    health = requests.get(f"{proxy_url}/_strangler/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok", "service": "proxy"}


def test_staff_api_through_the_proxy_refuses_bad_credentials_with_json(proxy_url: str) -> None:
    proxy_staff_token()  # a staff user exists; the credentials below are still not theirs
    api = f"{proxy_url}/_strangler/api/slices/"
    for headers, cookies in (
        ({}, {}),
        ({"Authorization": "Token not-a-token"}, {}),
        ({}, {"sessionid": "not-a-session"}),
        ({}, {"strangler_sessionid": "not-a-session"}),  # the proxy's own session cookie
    ):
        response = requests.get(api, headers=headers, cookies=cookies, timeout=5)
        assert response.status_code in (401, 403), (headers, cookies, response.text[:300])
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")


def test_staff_api_through_the_proxy_acts_for_staff_and_audits(proxy_url: str) -> None:
    services.plan_apply(plan=plan_parse(PLAN), who="setup")
    headers = {"Authorization": f"Token {proxy_staff_token()}"}
    api = f"{proxy_url}/_strangler/api"
    root = requests.get(f"{api}/", headers=headers, timeout=5)
    assert root.status_code == 200 and root.json()["slices"] == f"{api}/slices/", root.text[:300]
    listed = requests.get(f"{api}/slices/", headers=headers, timeout=5)
    assert listed.status_code == 200, listed.text[:300]
    assert listed.json()["results"][0]["name"] == "catalogue"
    promoted = requests.post(
        f"{api}/slices/catalogue/promote/", json={"why": "api"}, headers=headers, timeout=5
    )
    assert promoted.status_code == 200, promoted.text[:300]
    assert promoted.json()["to"]["phase"] == "syncing"
    refused = requests.post(
        f"{api}/slices/catalogue/weight/", json={"weight": 10}, headers=headers, timeout=5
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "refused"
    invalid = requests.post(f"{api}/plan/", json={"plan": "version: 2\n"}, headers=headers, timeout=5)
    assert invalid.status_code == 422
    assert "plan.version: 2 is not a supported version (use 1)" in invalid.json()["error"]["details"]
    audit = requests.get(f"{api}/audit/", headers=headers, timeout=5).json()["results"]
    assert audit[0]["who"] == "proxy-staff" and audit[0]["action"] == "promote"


def _form_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def test_admin_through_the_proxy_logs_in_serves_its_styles_and_acts_through_services(
    proxy_url: str,
) -> None:
    services.plan_apply(plan=plan_parse(PLAN), who="setup")
    proxy_staff_token("root-admin")
    admin = f"{proxy_url}/_strangler/admin"
    browser = requests.Session()
    login = browser.get(f"{admin}/login/", timeout=5)
    assert login.status_code == 200, login.text[:300]
    # The admin's own styles, at a path no proxied application can own.
    stylesheet = re.search(r'href="(/_strangler/static/admin/css/[^"]+\.css)"', login.text)
    assert stylesheet, login.text[:1000]
    css = browser.get(f"{proxy_url}{stylesheet.group(1)}", timeout=5)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    logo = browser.get(f"{proxy_url}/_strangler/static/admin/img/icon-yes.svg", timeout=5)
    assert logo.status_code == 200 and logo.content.startswith(b"<svg")
    signed_in = browser.post(
        f"{admin}/login/?next=/_strangler/admin/",
        data={
            "username": "root-admin",
            "password": STAFF_PASSWORD,
            "csrfmiddlewaretoken": _form_token(login.text),
            "next": "/_strangler/admin/",
        },
        timeout=5,
    )
    assert signed_in.status_code == 200 and "Site administration" in signed_in.text, signed_in.text[:500]
    changelist = browser.get(f"{admin}/strangler/slice/", timeout=5)
    assert changelist.status_code == 200
    slice_id = Slice.objects.using("control").get(name="catalogue").id
    acted = browser.post(
        f"{admin}/strangler/slice/",
        data={
            "action": "promote",
            "_selected_action": [slice_id],
            "csrfmiddlewaretoken": _form_token(changelist.text),
        },
        allow_redirects=False,
        timeout=5,
    )
    assert acted.status_code == 302, acted.text[:500]
    assert Slice.objects.using("control").get(name="catalogue").phase == "syncing"
    entry = AuditEntry.objects.using("control").filter(action="promote").get()
    assert entry.who == "admin:root-admin"


def test_a_command_under_another_service_refuses_and_names_the_one_it_needs(
    live_env: dict[str, str],
) -> None:
    result = subprocess.run(
        manage_command("strangler", "serve", "--port", "9"),
        env={**live_env, "SERVICE": "legacy"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "run it with SERVICE=proxy (or with SERVICE unset), not SERVICE=legacy" in result.stderr


def test_a_proxy_staff_token_from_the_readme_command_opens_the_staff_api(
    proxy_url: str, live_env: dict[str, str]
) -> None:
    env = {name: value for name, value in live_env.items() if name != "SERVICE"}  # as the README runs it

    def staff_token(*options: str) -> str:
        result = subprocess.run(
            manage_command("strangler", "staff", "--name", "readme-staff", *options),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "Authorization: Token" in result.stderr
        return result.stdout.strip()

    api = f"{proxy_url}/_strangler/api/slices/"
    token = staff_token()
    assert requests.get(api, headers={"Authorization": f"Token {token}"}, timeout=5).status_code == 200
    assert staff_token() == token  # the same credential on every run
    rotated = staff_token("--rotate")
    assert rotated != token
    assert requests.get(api, headers={"Authorization": f"Token {token}"}, timeout=5).status_code == 401
    assert requests.get(api, headers={"Authorization": f"Token {rotated}"}, timeout=5).status_code == 200


def _admin_login(browser: requests.Session, admin: str, username: str, password: str) -> None:
    login = browser.get(f"{admin}/login/", timeout=5)
    assert login.status_code == 200, login.text[:300]
    home = urlsplit(admin).path + "/"
    signed_in = browser.post(
        f"{admin}/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": _form_token(login.text),
            "next": home,
        },
        timeout=10,
    )
    assert signed_in.status_code == 200 and "Site administration" in signed_in.text, signed_in.text[:500]


@pytest.fixture
def before_the_monolith(proxy_url: str, legacy_stack: LegacyStack) -> str:
    """The module's proxy with a plan whose backends are the monolith (the session's)."""
    services.plan_apply(
        plan=plan_parse(
            plan_text(
                backends={"legacy": legacy_stack.base_url, "new": legacy_stack.base_url},
                slices={
                    "catalogue": plan_slice(service="new", routes=[plan_route("p", "/shop/api/products/")])
                },
            )
        ),
        who="setup",
    )
    proxy_caught_up(proxy_url)
    return proxy_url


def test_the_monoliths_admin_and_the_proxys_stay_signed_in_side_by_side(before_the_monolith: str) -> None:
    # Issue 7 follow-up: both admins used the cookies `sessionid` and `csrftoken` with Path=/ on the
    # same host, so signing in to the monolith's /admin/ through the proxy signed the operator out of
    # /_strangler/admin/ (and the proxy's superuser session went to the monolith with every request).
    from django.contrib.auth import get_user_model

    proxy_url = before_the_monolith
    proxy_staff_token("side-by-side")
    monolith_admin, _ = (
        get_user_model()
        .objects.db_manager("default")
        .get_or_create(username="monolith-admin", defaults={"is_staff": True, "is_superuser": True})
    )
    monolith_admin.set_password("monolith-password")
    monolith_admin.save(using="default")

    browser = requests.Session()
    _admin_login(browser, f"{proxy_url}/_strangler/admin", "side-by-side", STAFF_PASSWORD)
    _admin_login(browser, f"{proxy_url}/admin", "monolith-admin", "monolith-password")
    for admin in (f"{proxy_url}/_strangler/admin/", f"{proxy_url}/admin/"):
        page = browser.get(admin, allow_redirects=False, timeout=5)
        assert page.status_code == 200 and "Site administration" in page.text, (admin, page.status_code)
    proxys = {c.name: c.path for c in browser.cookies if c.name.startswith("strangler_")}
    assert proxys == {"strangler_sessionid": "/_strangler/", "strangler_csrftoken": "/_strangler/"}


def _head_status(url: str, headers: int) -> tuple[int, bytes, bytes]:
    """Status, head and body of a GET carrying `headers` headers (Host and Connection included)."""
    host, port = urlsplit(url).netloc.split(":")
    extra = b"".join(b"X-Header-%d: v\r\n" % i for i in range(headers - 2))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, body


def test_the_proxys_header_bound_leaves_room_under_the_monoliths(
    before_the_monolith: str, legacy_stack: LegacyStack
) -> None:
    # Issue 7 follow-up: a request with ~100 headers was forwarded, and the monolith's granian
    # answered 431 with an empty body and no content type, which the proxy passed on.
    status, head, body = _head_status(legacy_stack.base_url, 101)
    assert status == 431 and body == b"", head  # the monolith's own bound, as the tester met it
    status, head, body = _head_status(before_the_monolith, 90)  # the proxy's bound (default)
    assert status == 200, (head, body[:300])  # with the proxy's own headers added, still accepted
    status, head, body = _head_status(before_the_monolith, 91)
    assert status == 431 and b"content-type: application/json" in head.lower(), head
    assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"
