"""Pricing API credentials: "X-API-Key: <key>", stored hashed (legacy's hash, so keys moved from the
monolith keep working); requests throttled per key across every instance (mes_pricing.rate_limits),
and failed attempts throttled per client address and key prefix (ops.key_attempts).

Other public APIs of the pricing process (the deprecated production-order reads) reuse
ApiKeyAuthentication, HasApiKey and ApiKeyRateThrottle.
"""

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import throttling
from rest_framework.request import Request

from mes_pricing.models import ApiKey, hash_api_key
from mes_pricing.rate_limits import Rate, rate_limit_hit
from ops.key_attempts import HashedApiKeyAuthentication


class ApiKeyAuthentication(HashedApiKeyAuthentication):
    def key_find(self, raw: str) -> ApiKey | None:
        return ApiKey.objects.filter(key_hash=hash_api_key(raw)).first()


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
