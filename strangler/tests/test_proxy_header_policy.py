"""The proxy's header policy and signed overrides as pure logic: any bytes a client can put in a
header or cookie are used, ignored or refused with a 4xx, never an exception (issue 7, defect 6)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.proxy.header_policy import HeaderPolicy, cookie_value, cookies_without
from strangler.proxy.overrides import override_token_issue, override_verify
from strangler.proxy.request import RequestRefused

SECRET = "s3cret"
OWN_COOKIES = ["strangler_sessionid", "strangler_csrftoken", "strangler_backend", "strangler_pin"]
POLICY = HeaderPolicy(
    trusted_proxies=["10.0.0.1"], override_secret=SECRET, max_body=1000, own_cookies=OWN_COOKIES[:2]
)
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


def _forwarded_cookie_names(request: Any) -> list[bytes]:
    return [
        part.strip().partition(b"=")[0]
        for name, value in request.forward_headers
        if name == b"cookie"
        for part in value.split(b";")
    ]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([*OWN_COOKIES, "sessionid", "csrftoken", "cart", "strangler_other"]),
            st.binary(max_size=20).filter(lambda value: b";" not in value),
        ),
        max_size=8,
    ),
    st.integers(min_value=1, max_value=3),
)
def test_the_proxys_own_cookies_are_never_forwarded(cookies: list[tuple[str, bytes]], headers: int) -> None:
    parts = [name.encode() + b"=" + value for name, value in cookies]
    # The cookies split over one to three Cookie headers, as HTTP/2 clients send them.
    split = [b"; ".join(parts[i::headers]) for i in range(headers)]
    request = POLICY.parse(_scope([(b"cookie", value) for value in split if value]))
    forwarded = _forwarded_cookie_names(request)
    assert not set(forwarded) & {name.encode() for name in OWN_COOKIES}
    theirs = [n.encode() for n, _ in cookies if n not in OWN_COOKIES]
    assert sorted(forwarded) == sorted(theirs)


def test_the_customer_key_is_the_backends_session_not_the_proxys() -> None:
    theirs = POLICY.parse(_scope([(b"cookie", b"strangler_sessionid=proxy; sessionid=customer")]))
    assert theirs.customer_key == b"customer"
    assert POLICY.parse(_scope([(b"cookie", b"strangler_sessionid=proxy")])).customer_key == b"10.0.0.1"


def test_cookies_without_keeps_the_others_as_they_came() -> None:
    own = frozenset({b"strangler_pin"})
    assert cookies_without(b"a=1; strangler_pin=2; b=3", own) == b"a=1; b=3"
    assert cookies_without(b"strangler_pin=2; a=1", own) == b"a=1"
    assert cookies_without(b"strangler_pin=2", own) == b""
    assert cookies_without(b"strangler_pinned=2", own) == b"strangler_pinned=2"


def test_a_cookie_of_the_proxys_must_carry_its_prefix() -> None:
    with pytest.raises(ValueError, match="sessionid"):
        HeaderPolicy(trusted_proxies=[], override_secret="", max_body=1, own_cookies=["sessionid"])
