"""Service-to-service authentication: "Authorization: Service <token>" with settings.SERVICE_API_TOKEN."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

KEYWORD = b"service"


@dataclass(frozen=True)
class ServiceCaller:
    """Another service of the company; `request.user` of an internal API call."""

    is_authenticated: bool = True
    is_staff: bool = False

    def get_username(self) -> str:
        return "service"


class ServiceTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ServiceCaller, None] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid Service header: send 'Service <token>'.")
        # Constant time: a caller learns nothing of the token from how long a refusal takes.
        if not hmac.compare_digest(parts[1], settings.SERVICE_API_TOKEN.encode()):
            raise AuthenticationFailed("Invalid service token.")
        return ServiceCaller(), None

    def authenticate_header(self, request: Request) -> str:
        return "Service"
