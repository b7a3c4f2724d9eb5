"""Pricing API credentials: "X-API-Key: <key>", stored hashed (legacy's hash, so keys moved from the
monolith keep working); requests throttled per key across every instance (mes_pricing.rate_limits),
and failed attempts throttled per client address and key prefix (ops.key_attempts).

Other public APIs of the pricing process (the deprecated production-order reads) reuse
ApiKeyAuthentication, HasApiKey and ApiKeyRateThrottle.
"""

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, throttling
from rest_framework.request import Request

from mes_pricing.models import ApiKey, hash_api_key
from mes_pricing.rate_limits import Rate, rate_limit_hit
from ops.key_attempts import (
    FailureBounds,
    KeyAttempt,
    client_address,
    key_attempt_failed,
    key_attempt_wait_seconds,
)

# Bounds what a client can make the service hash and count; real keys are 43 characters.
MAX_KEY_LENGTH = 256


class ApiKeyAuthentication(authentication.BaseAuthentication):
    header = "X-API-Key"

    def authenticate(self, request: Request) -> tuple[ApiKey, str] | None:
        raw = request.headers.get(self.header)
        if raw is None:
            return None
        attempt = KeyAttempt.of(
            address=client_address(
                peer=request.META.get("REMOTE_ADDR", ""),
                forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR"),
            ),
            raw_key=raw,
        )
        bounds = FailureBounds.from_settings()
        # Checked before the key, so that past the bound even the right key tells a guesser nothing.
        wait = key_attempt_wait_seconds(attempt=attempt, bounds=bounds)
        if wait:
            raise exceptions.Throttled(
                wait=wait, detail="Too many wrong API keys from this address or with this key prefix."
            )
        key = None
        if len(raw) <= MAX_KEY_LENGTH:
            key = ApiKey.objects.filter(key_hash=hash_api_key(raw)).first()
        if key is None:
            key_attempt_failed(attempt=attempt, bounds=bounds)
            raise exceptions.AuthenticationFailed("The API key is not valid.")
        if not key.active:
            raise exceptions.PermissionDenied("The API key has been revoked.")
        return key, raw

    def authenticate_header(self, request: Request) -> str:
        return self.header


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Describes the pricing API key in the OpenAPI schema."""

    target_class = ApiKeyAuthentication
    name = "pricingApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": ApiKeyAuthentication.header}


class HasApiKey:
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ApiKey)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return True


def key_rate(key: ApiKey) -> Rate:
    """MES_API_RATE_LIMIT, or the key's own rate in MES_API_KEY_RATE_LIMITS (by key name): the same
    settings as the monolith's, so a key keeps its limit when it moves."""
    return Rate.parse(settings.MES_API_KEY_RATE_LIMITS.get(key.name) or settings.MES_API_RATE_LIMIT)


class ApiKeyRateThrottle(throttling.BaseThrottle):
    """The key's rate, held across every instance of the service (one counter in the shared Redis)."""

    def __init__(self) -> None:
        self._wait = 0

    def allow_request(self, request: Request, view: Any) -> bool:
        if not isinstance(request.user, ApiKey):
            return True  # refused by HasApiKey anyway
        # By the key's hash, not its row id: a key keeps its count wherever its row is copied, and a
        # re-created database does not inherit another key's count.
        verdict = rate_limit_hit(subject=f"key:{request.user.key_hash[:32]}", rate=key_rate(request.user))
        self._wait = verdict.wait_seconds
        return verdict.allowed

    def wait(self) -> float | None:
        return self._wait or None
