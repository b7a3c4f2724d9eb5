"""Signed backend overrides for authorised testers: only the proxy's own rules choose a backend for a
customer; a tester may choose one with a token the operators signed.

A tester sends `X-Strangler-Backend: <token>` or the cookie `strangler_backend=<token>`, where the token
is `<backend>.<expires at, epoch seconds>.<HMAC-SHA256 of the first two parts, hex>` signed with
STRANGLER_OVERRIDE_SECRET. Anything else (a bare "new", an expired or forged token, bytes that are not
ASCII) is ignored: the request is routed by the proxy's own rules.
"""

from __future__ import annotations

import hashlib
import hmac

BACKENDS = frozenset({b"legacy", b"new"})
# "legacy." + 10 digits + "." + 64 hex: anything longer is not a token and is not hashed.
MAX_TOKEN_BYTES = 96


def _signature(secret: bytes, signed: bytes) -> bytes:
    return hmac.new(secret, signed, hashlib.sha256).hexdigest().encode()


def override_token_issue(*, backend: str, secret: str, expires_at: int) -> str:
    """A token that sends its bearer's reads to `backend` ("legacy" or "new") until `expires_at`."""
    if backend.encode() not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(b.decode() for b in BACKENDS)}, not {backend!r}")
    if not secret:
        raise ValueError("STRANGLER_OVERRIDE_SECRET is empty: the proxy honours no override token")
    signed = b"%s.%d" % (backend.encode(), expires_at)
    return (signed + b"." + _signature(secret.encode(), signed)).decode()


def override_verify(value: bytes, *, secret: bytes, now: float) -> str | None:
    """The backend a valid token names, or None for anything else (never raises)."""
    if not secret or not value or len(value) > MAX_TOKEN_BYTES:
        return None
    signed, _, signature = value.rpartition(b".")
    backend, _, expires_at = signed.partition(b".")
    if backend not in BACKENDS or not expires_at.isdigit() or len(expires_at) > 10 or int(expires_at) <= now:
        return None
    if not hmac.compare_digest(signature, _signature(secret, signed)):
        return None
    return backend.decode()
