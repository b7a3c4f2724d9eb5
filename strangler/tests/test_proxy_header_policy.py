"""The proxy's header policy and signed overrides as pure logic: any bytes a client can put in a
header or cookie are used, ignored or refused with a 4xx, never an exception (issue 7, defect 6)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.proxy.header_policy import HeaderPolicy, cookie_value
from strangler.proxy.overrides import override_token_issue, override_verify
from strangler.proxy.request import RequestRefused

SECRET = "s3cret"
POLICY = HeaderPolicy(trusted_proxies=["10.0.0.1"], override_secret=SECRET, max_body=1000)
NAMES = [
    b"x-strangler-backend",
    b"cookie",
    b"authorization",
    b"x-api-key",
    b"x-request-id",
    b"traceparent",
    b"content-length",
    b"connection",
    b"host",
    b"x-forwarded-for",
    b"x-strangler-internal-token",
    b"x-other",
]


def _scope(headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/shop/api/products/",
        "raw_path": b"/shop/api/products/",
        "query_string": b"",
        "http_version": "1.1",
        "client": ("10.0.0.1", 5000),
        "scheme": "http",
        "headers": headers,
        **extra,
    }


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), st.binary(max_size=6000)), max_size=8))
def test_any_header_bytes_parse_or_are_refused_with_a_4xx(headers: list[tuple[bytes, bytes]]) -> None:
    try:
        request = POLICY.parse(_scope(headers))
    except RequestRefused as refused:
        assert 400 <= refused.status < 500 and refused.code
        return
    assert request.override is None  # no random bytes carry a valid signature
    assert request.pinned_until < 10**10
    assert request.customer_key
    names = [n for n, _ in request.forward_headers]
    assert names.count(b"x-request-id") == 1 and names.count(b"traceparent") == 1


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_cookie_values_are_found_whatever_the_bytes(before: bytes, value: bytes) -> None:
    cookie_value(before + b"; strangler_backend=" + value, b"strangler_backend")


def test_only_a_valid_signed_token_picks_a_backend() -> None:
    token = override_token_issue(backend="new", secret=SECRET, expires_at=2000).encode()
    assert override_verify(token, secret=SECRET.encode(), now=1000) == "new"
    assert override_verify(token, secret=SECRET.encode(), now=2000) is None  # expired
    assert override_verify(token, secret=b"other", now=1000) is None
    assert override_verify(b"new", secret=SECRET.encode(), now=1000) is None
    assert override_verify(token.replace(b"2000", b"2999"), secret=SECRET.encode(), now=1000) is None
    assert override_verify(token, secret=b"", now=1000) is None  # no secret configured: no overrides
    legacy = override_token_issue(backend="legacy", secret=SECRET, expires_at=2000).encode()
    assert override_verify(b"new" + legacy.removeprefix(b"legacy"), secret=SECRET.encode(), now=1000) is None
    with pytest.raises(ValueError):
        override_token_issue(backend="staging", secret=SECRET, expires_at=2000)


def test_the_policy_reads_a_signed_override_from_header_or_cookie() -> None:
    token = override_token_issue(backend="new", secret=SECRET, expires_at=10**10 - 1).encode()
    assert POLICY.parse(_scope([(b"x-strangler-backend", token)])).override == "new"
    assert POLICY.parse(_scope([(b"cookie", b"a=b; strangler_backend=" + token)])).override == "new"
    assert POLICY.parse(_scope([(b"x-strangler-backend", b"new")])).override is None


def test_content_length_is_checked_and_bounded() -> None:
    with pytest.raises(RequestRefused) as too_big:
        POLICY.parse(_scope([(b"content-length", b"1001")]))
    assert too_big.value.status == 413
    with pytest.raises(RequestRefused) as bad:
        POLICY.parse(_scope([(b"content-length", b"9" * 5000)]))
    assert bad.value.status == 400
    assert POLICY.parse(_scope([(b"content-length", b"10")])).content_length == 10
