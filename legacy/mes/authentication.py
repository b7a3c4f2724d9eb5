"""External MES API credentials: "X-API-Key: <key>", stored hashed; throttled per key, and failed
attempts throttled per client address and key prefix (see ops.key_attempts)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import throttling
from rest_framework.request import Request

from legacy.mes.models import ApiKey, hash_api_key
from ops.key_attempts import HashedApiKeyAuthentication


class ApiKeyAuthentication(HashedApiKeyAuthentication):
    def key_find(self, raw: str) -> ApiKey | None:
        return ApiKey.objects.filter(key_hash=hash_api_key(raw)).first()


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Describes the MES API key in the OpenAPI schema."""

    target_class = ApiKeyAuthentication
    name = "mesApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": ApiKeyAuthentication.header}


class HasApiKey:
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ApiKey)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return True


class ApiKeyRateThrottle(throttling.SimpleRateThrottle):
    """MES_API_RATE_LIMIT per key, or the key's own rate in MES_API_KEY_RATE_LIMITS (by key name):
    a service that prices every order line of its customers (the shop) needs more than a partner."""

    scope = "mes_api"

    def get_rate(self) -> str:
        from django.conf import settings

        return settings.MES_API_RATE_LIMIT

    def allow_request(self, request: Request, view: Any) -> bool:
        from django.conf import settings

        if isinstance(request.user, ApiKey):
            own = settings.MES_API_KEY_RATE_LIMITS.get(request.user.name)
            if own:
                self.rate = own
                self.num_requests, self.duration = self.parse_rate(own)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.user, ApiKey):
            return f"throttle_mes_api_{request.user.pk}"
        return None
