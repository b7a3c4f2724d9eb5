"""The proxy process as a stranger meets it: each test is a defect seen when the system was tried from
outside (issue 7), replayed over real HTTP (and raw sockets where a client library would refuse to
send the bytes) against the proxy started as the README says, in front of two controllable backends.
"""

from __future__ import annotations

import json
import re
import socket
import time
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
import requests
from django.core.management import CommandError, call_command

from strangler import services
from tests.integration.proxy_stack import (
    INTERNAL_TOKEN,
    Stack,
    proxy_caught_up,
    proxy_metrics_text,
    proxy_routing,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]

OVERRIDE_SECRET = "test-override-secret"
HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
MAX_PINS = 50


@pytest.fixture(scope="module")
def proxy_env() -> dict[str, str]:
    return {
        "STRANGLER_OVERRIDE_SECRET": OVERRIDE_SECRET,
        "STRANGLER_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "STRANGLER_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "STRANGLER_MAX_PINS": str(MAX_PINS),
    }


def _address(stack: Stack) -> tuple[str, int]:
    host, port = stack.proxy_url.removeprefix("http://").split(":")
    return host, int(port)


def raw_exchange(
    stack: Stack, request: bytes, *, timeout: float = 5.0
) -> tuple[int, dict[bytes, list[bytes]], bytes]:
    """Sends bytes a client library would not send; reads the answer until the proxy closes."""
    with socket.create_connection(_address(stack), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers: dict[bytes, list[bytes]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, body


def assert_error_shape(status: int, headers: dict[bytes, list[bytes]], body: bytes) -> dict:
    assert headers[b"content-type"] == [b"application/json"], (status, headers, body)
    document = json.loads(body)
    assert set(document) == {"error"} and {"code", "message"} <= set(document["error"]), document
    return document["error"]


def test_requests_after_a_large_response_do_not_wait_for_the_read_timeout(stack: Stack) -> None:
    # Defect 1: a pooled upstream connection went back to the pool with its reading paused, so the
    # next request on it waited for the read timeout (2 s here) and a write answered 504.
    slow = []
    for round_ in range(20):
        size = (300_000, 390_000, 600_000)[round_ % 3]
        large = requests.get(f"{stack.proxy_url}/stream/{size}", timeout=10)
        assert large.status_code == 200 and len(large.content) == size
        for method in ("GET", "POST"):
            started = time.monotonic()
            small = requests.request(method, f"{stack.proxy_url}/other/after-{round_}", json={}, timeout=10)
            took = time.monotonic() - started
            if small.status_code >= 500 or took > 1.0:
                slow.append((round_, method, small.status_code, round(took, 2)))
    assert slow == []


def _token(backend: str, seconds: int) -> str:
    from strangler.proxy.overrides import override_token_issue

    return override_token_issue(
        backend=backend, secret=OVERRIDE_SECRET, expires_at=int(time.time()) + seconds
    )


def test_only_signed_overrides_pick_a_backend(stack: Stack, settings: Any) -> None:
    # Defect 4: with the slice in shadow, any anonymous client could read from the backend not live.
    stack.to_phase("catalogue", "shadow")
    url = f"{stack.proxy_url}/shop/api/products/"

    def backend(headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None) -> str:
        response = requests.get(url, headers=headers, cookies=cookies, timeout=5)
        assert response.status_code == 200, response.text
        return response.headers["x-backend-name"]

    assert backend({"X-Strangler-Backend": "new"}) == "legacy"
    assert backend(cookies={"strangler_backend": "new"}) == "legacy"
    settings.STRANGLER_OVERRIDE_SECRET = OVERRIDE_SECRET  # the tester's shell has the proxy's secret
    out = StringIO()
    call_command("strangler", "override-token", "new", "--seconds", "60", stdout=out)
    signed = out.getvalue().strip()
    assert backend({"X-Strangler-Backend": signed}) == "new"
    assert backend(cookies={"strangler_backend": signed}) == "new"
    expired = _token("new", -1)
    assert backend({"X-Strangler-Backend": expired}) == "legacy"
    tampered = signed[:-4] + ("0000" if not signed.endswith("0000") else "1111")
    assert backend({"X-Strangler-Backend": tampered}) == "legacy"
    forged_backend = "new" + _token("legacy", 60).removeprefix("legacy")
    assert backend({"X-Strangler-Backend": forged_backend}) == "legacy"
    settings.STRANGLER_OVERRIDE_SECRET = ""
    with pytest.raises(CommandError, match="STRANGLER_OVERRIDE_SECRET is empty"):
        call_command("strangler", "override-token", "new")


def _rss(stack: Stack) -> int:
    """Resident memory of the proxy process in bytes (Linux)."""
    assert stack.proxy.popen is not None
    with open(f"/proc/{stack.proxy.popen.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_pin_cookies_and_distinct_customers_do_not_grow_the_proxy(stack: Stack) -> None:
    # Defect 5: distinct Authorization values with a far-future pin cookie were each recorded, in every
    # phase, for ever (about 86 MB per 1,500 requests).
    stack.to_phase("catalogue", "shadow")
    session = requests.Session()
    before = _rss(stack)
    for i in range(1500):
        response = session.get(
            f"{stack.proxy_url}/shop/api/products/",
            headers={"Authorization": f"Bearer {i:06d}" + "x" * 20_000, "Cookie": "strangler_pin=9999999999"},
            timeout=5,
        )
        assert response.status_code == 200
    grown_mb = (_rss(stack) - before) / 1e6
    assert grown_mb < 15, grown_mb  # 1,500 such keys kept would be 30 MB
    assert proxy_routing(stack.proxy_url)["pins"] == 0  # no slice in canary: nothing to pin

    # In canary, writes pin their writer, but the table is bounded.
    stack.to_phase("catalogue", "canary")
    services.slice_set_weight(name="catalogue", weight=Decimal("100"), who="test")
    proxy_caught_up(stack.proxy_url)
    for i in range(MAX_PINS * 3):
        written = session.post(
            f"{stack.proxy_url}/shop/api/orders/",
            json={},
            headers={"Authorization": f"Bearer w{i}"},
            timeout=5,
        )
        assert written.status_code == 201
    assert 0 < proxy_routing(stack.proxy_url)["pins"] <= MAX_PINS
    # The latest writer is still pinned; a pin cookie beyond any slice's pin time is not believed.
    last = session.get(
        f"{stack.proxy_url}/shop/api/orders/",
        headers={"Authorization": f"Bearer w{MAX_PINS * 3 - 1}"},
        timeout=5,
    )
    assert last.headers["x-backend-name"] == "legacy"
    far = session.get(
        f"{stack.proxy_url}/shop/api/orders/",
        headers={"Authorization": "Bearer reader", "Cookie": "strangler_pin=9999999999"},
        timeout=5,
    )
    assert far.headers["x-backend-name"] == "new"


PRODUCTS = b"GET /shop/api/products/"
# Request line (without the version) and the extra header lines each case sends.
BAD_REQUESTS: dict[str, tuple[bytes, bytes]] = {
    "override header not UTF-8": (PRODUCTS, b"X-Strangler-Backend: \xff\r\n"),
    "override cookie not UTF-8": (PRODUCTS, b"Cookie: strangler_backend=\xff\r\n"),
    "pin of 5,000 digits": (b"GET /shop/api/orders/", b"Cookie: strangler_pin=" + b"9" * 5000 + b"\r\n"),
    "pin not a number": (b"GET /shop/api/orders/", b"Cookie: strangler_pin=\xff\xfe; a=b\r\n"),
    "authorization not UTF-8": (PRODUCTS, b"Authorization: \xff\xfe\r\n"),
    "request id not UTF-8": (b"GET /other/", b"X-Request-ID: \xff\r\n"),
    "traceparent garbage": (b"GET /other/", b"traceparent: 00-\xff\r\n"),
    "internal token not UTF-8": (b"GET /mes/api/production-orders/", b"X-Strangler-Internal-Token: \xff\r\n"),
    "path not UTF-8": (PRODUCTS + b"\xff", b""),
    "escaped path not UTF-8": (PRODUCTS + b"%ff%fe", b""),
    "host not UTF-8": (b"GET /other/", b"Host: \xff\r\n"),
    "content-length not a number": (b"POST /echo/x", b"Content-Length: 1x\r\n"),
    "negative content-length": (b"POST /echo/x", b"Content-Length: -1\r\n"),
    "content-length too many digits": (b"POST /echo/x", b"Content-Length: " + b"9" * 5000 + b"\r\n"),
    "cookie without equals": (PRODUCTS, b"Cookie: strangler_backend; ;;=\r\n"),
    "absolute-form target": (b"GET http://example.com/other/", b""),
    "asterisk target": (b"OPTIONS *", b""),
    "CONNECT": (b"CONNECT example.com:443", b""),
    "websocket upgrade": (
        PRODUCTS,
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n",
    ),
    "h2c upgrade": (
        PRODUCTS,
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AA\r\n",
    ),
    "length and chunked": (b"POST /echo/x", b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"),
    "header name not a token": (PRODUCTS, b"X Bad\xff: 1\r\n"),
    "many cookies": (PRODUCTS, b"Cookie: " + b"; ".join(b"c%d=%d" % (i, i) for i in range(2000)) + b"\r\n"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_input_is_refused_or_ignored_never_a_500(stack: Stack, case: str) -> None:
    # Defect 6: these answered 500 in plain text with "Exception in ASGI application".
    stack.to_phase("catalogue", "canary")
    line, extra = BAD_REQUESTS[case]
    host = b"" if extra.startswith(b"Host:") else b"Host: x\r\n"
    status, headers, body = raw_exchange(
        stack, line + b" HTTP/1.1\r\n" + host + extra + b"Connection: close\r\n\r\n"
    )
    assert status < 500, (status, body[:300])
    if b"x-backend-name" not in headers:  # answered by the proxy itself
        assert 400 <= status < 500
        assert_error_shape(status, headers, body)


def _read_timeouts(stack: Stack) -> dict[str, float]:
    text = proxy_metrics_text(stack.proxy_url)
    found = re.findall(r'^strangler_proxy_client_read_timeouts_total\{phase="(\w+)"\} (\S+)$', text, re.M)
    return {phase: float(value) for phase, value in found}


def test_partial_requests_are_closed_after_a_bounded_time(stack: Stack) -> None:
    # Defect 7: 2,000 partial requests all stayed open after 40 s.
    timeouts_before = _read_timeouts(stack)
    sockets: list[socket.socket] = []
    try:
        for i in range(150):
            sock = socket.create_connection(_address(stack), timeout=5)
            if i % 3 == 0:
                sock.sendall(b"GET /other/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # headers never end
            elif i % 3 == 1:
                sock.sendall(b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            sockets.append(sock)  # every third sends nothing at all
        opened = time.monotonic()
        time.sleep(0.3)
        # The proxy keeps answering others meanwhile.
        assert requests.get(f"{stack.proxy_url}/other/meanwhile", timeout=5).status_code == 200
        still_open = []
        for i, sock in enumerate(sockets):
            sock.settimeout(max(0.05, opened + max(HEADER_TIMEOUT, BODY_TIMEOUT) + 3.0 - time.monotonic()))
            try:
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            except TimeoutError:
                still_open.append(sock)
                continue
            except ConnectionResetError:
                continue
            if i % 3 == 2:
                # A connection that never began a request is closed without an answer, so a client
                # that sends just then does not read a 408 as the answer to its request.
                assert answer == b"", answer[:200]
            else:
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408"), answer[:200]
                assert json.loads(body)["error"]["code"] == "request_timeout"
        assert still_open == [], f"{len(still_open)} of {len(sockets)} partial requests still open"
        assert time.monotonic() - opened < max(HEADER_TIMEOUT, BODY_TIMEOUT) + 3.0
        # Nothing partial reached a backend.
        stats = requests.get(f"{stack.legacy_url}/_control/stats", timeout=5).json()["received"]
        assert "POST /echo/x" not in stats
        # Operators see a slow-client flood in the metrics (the log keeps it at debug).
        timeouts = _read_timeouts(stack)
        for phase in ("headers", "body"):
            assert timeouts.get(phase, 0) - timeouts_before.get(phase, 0) >= 50, timeouts
    finally:
        for sock in sockets:
            sock.close()
    assert requests.get(f"{stack.proxy_url}/other/after", timeout=5).status_code == 200


def test_the_internal_route_refusal_is_valid_json_whatever_the_path(stack: Stack) -> None:
    # Defect 8: the 403 echoed the raw path into a hand-built JSON body.
    response = requests.get(f"{stack.proxy_url}/mes/api/production-orders/%22%5C", timeout=5)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "internal_route" and '/mes/api/production-orders/"\\' in error["message"]


def test_a_proxied_response_carries_one_request_id(stack: Stack) -> None:
    # Defect 9: the backend's X-Request-ID and the proxy's both reached the client.
    status, headers, body = raw_exchange(
        stack, b"GET /echo/id HTTP/1.1\r\nHost: x\r\nX-Request-ID: req-42\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and headers[b"x-request-id"] == [b"req-42"]
    status, headers, body = raw_exchange(
        stack, b"GET /echo/id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and len(headers[b"x-request-id"]) == 1


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        (b"FOO /shop/api/products/ HTTP/1.1", 405),
        (b"GET /shop/api/products/ HTTP/9.9", 400),
        (b"GET /shop/api/products/ HTTP/1.1\r\nno colon in this header", 400),
    ],
)
def test_errors_the_proxy_makes_itself_have_the_json_error_shape(
    stack: Stack, request_line: bytes, expected: int
) -> None:
    # Defect 11: an unknown method got uvicorn's 400 text/plain "Invalid HTTP request received.".
    status, headers, body = raw_exchange(stack, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == expected
    assert_error_shape(status, headers, body)


def test_http_1_0_without_host_gets_a_host_upstream_and_no_chunked_answer(stack: Stack) -> None:
    # Defect 12: the proxy forwarded HTTP/1.1 without Host and relayed a chunked answer to HTTP/1.0.
    status, headers, body = raw_exchange(stack, b"GET /echo/h10 HTTP/1.0\r\n\r\n")
    assert status == 200 and b"chunked" not in b"".join(headers.get(b"transfer-encoding", []))
    assert json.loads(body)["headers"]["host"].startswith("127.0.0.1:")
    size = 100_000  # the backend streams this one chunked
    status, headers, body = raw_exchange(stack, b"GET /stream/%d HTTP/1.0\r\n\r\n" % size)
    assert status == 200 and b"transfer-encoding" not in headers, headers
    assert len(body) == size and body[:512] == bytes(range(256)) * 2
    assert headers.get(b"content-length", [b"%d" % size]) == [b"%d" % size]


def test_the_proxys_own_cookies_never_reach_a_backend(stack: Stack) -> None:
    # Issue 7 follow-up: the Cookie header went to the backend unchanged, so a backend (and its logs)
    # received the proxy admin's session, its CSRF token and the tester's override and pin cookies.
    own = b"strangler_sessionid=admin; strangler_csrftoken=csrf; strangler_backend=t; strangler_pin=1"
    theirs = b"sessionid=monolith-session; csrftoken=monolith-csrf; cart=3"
    for cookies, expected in (
        (own + b"; " + theirs, theirs),
        (b"sessionid=monolith-session; " + own + b"; cart=3", b"sessionid=monolith-session; cart=3"),
        (theirs, theirs),  # nothing of the proxy's: the header goes on as it came
    ):
        status, _, body = raw_exchange(
            stack,
            b"GET /echo/cookies HTTP/1.1\r\nHost: x\r\nCookie: " + cookies + b"\r\nConnection: close\r\n\r\n",
        )
        assert status == 200, body[:300]
        assert json.loads(body)["headers"]["cookie"] == expected.decode()
    # Only the proxy's cookies: the backend gets no Cookie header at all.
    status, _, body = raw_exchange(
        stack, b"GET /echo/cookies HTTP/1.1\r\nHost: x\r\nCookie: " + own + b"\r\nConnection: close\r\n\r\n"
    )
    assert status == 200 and "cookie" not in json.loads(body)["headers"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([b"X-Many-%d: v" % i for i in range(100)], 431),  # too many headers
        ([b"X-Big-%d: " % i + b"v" * 15_000 for i in range(5)], 431),  # too many header bytes
        ([b"X-Some-%d: v" % i for i in range(60)] + [b"X-Big: " + b"v" * 30_000], 200),  # within both
    ],
    ids=["100 headers", "75 KB of headers", "within the bounds"],
)
def test_the_proxy_bounds_request_headers_itself(stack: Stack, extra: list[bytes], expected: int) -> None:
    # Issue 7 follow-up: ~100 headers were forwarded and the monolith's granian answered 431 with
    # an empty body and no content type, which the proxy passed on.
    path = b"/echo/headers-%d-%d" % (len(extra), sum(map(len, extra)))  # one per case in the stats
    head = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + b"".join(h + b"\r\n" for h in extra)
    status, headers, body = raw_exchange(stack, head + b"Connection: close\r\n\r\n")
    assert status == expected, body[:300]
    if expected == 431:
        assert b"x-backend-name" not in headers  # refused before forwarding
        assert assert_error_shape(status, headers, body)["code"] == "request_header_fields_too_large"
    stats = requests.get(f"{stack.legacy_url}/_control/stats", timeout=5).json()["received"]
    assert (f"GET {path.decode()}" in stats) == (expected == 200)


@pytest.mark.parametrize(
    "request_line",
    [
        # The start of a TLS ClientHello sent to the plain-HTTP port.
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),
        b"\x00\xff\xfe garbage /x HTTP/1.1",
        b"G{T} /shop/api/products/ HTTP/1.1",
    ],
    ids=["tls client hello", "binary garbage", "method not a token"],
)
def test_a_request_line_that_is_not_http_is_a_bad_request(stack: Stack, request_line: bytes) -> None:
    # Issue 7 follow-up: these got 405 method_not_allowed; only a well-formed unknown method is a 405.
    status, headers, body = raw_exchange(stack, request_line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 400
    assert assert_error_shape(status, headers, body)["code"] == "bad_request"


def test_metrics_are_for_the_scraper_only(stack: Stack) -> None:
    # Issue 10: an anonymous client read a backend's /metrics and the proxy's own through the proxy.
    # The scraper reads each process directly; through the proxy both are internal routes.
    for path in ("/metrics", "/metrics/", "/_strangler/metrics", "/_strangler/metrics/"):
        outside = requests.get(f"{stack.proxy_url}{path}", timeout=5)
        assert outside.status_code == 403, (path, outside.status_code, outside.text[:200])
        assert outside.json()["error"]["code"] == "internal_route"
        assert "# TYPE" not in outside.text
    # However the path is spelled on the wire, it is the decoded path that is refused.
    status, headers, body = raw_exchange(
        stack, b"GET /%6detrics HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
    )
    assert status == 403 and assert_error_shape(status, headers, body)["code"] == "internal_route"
    # Everything else is still answered, and internal callers still read both.
    assert requests.get(f"{stack.proxy_url}/shop/api/products/", timeout=5).status_code == 200
    internal = {"X-Strangler-Internal-Token": INTERNAL_TOKEN}
    backend = requests.get(f"{stack.proxy_url}/metrics", headers=internal, timeout=5)
    assert backend.status_code != 403 and "x-backend-name" in backend.headers
    assert "strangler_proxy_requests_total" in proxy_metrics_text(stack.proxy_url)
