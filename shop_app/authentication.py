"""Customer API credentials: "Authorization: Bearer <customer api_token>"."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from shop_app.models import Customer


class CustomerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Customer, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be 'Bearer <token>'.")
        customer = Customer.objects.filter(api_token=header[1]).first()
        if customer is None:
            raise exceptions.AuthenticationFailed("The customer token is not valid.")
        return customer, header[1]

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class IsCustomer:
    """Allows requests authenticated with a customer token."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Customer)

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return True


class CustomerTokenScheme(OpenApiAuthenticationExtension):
    """Describes the customer token in the OpenAPI schema."""

    target_class = CustomerTokenAuthentication
    name = "customerToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer"}
