"""OpenAPI schema of every API: each operation documents the error answers it can give, in the one
error shape of ops.errors, so that a client (and schemathesis) knows every status to expect.

The statuses follow from what the operation is: a body or query parameters can be invalid (400),
a body can be too large or not JSON (413, 415), a credential can be missing or refused (401, 403),
a path names something that may not exist (404), a throttle can refuse (429). What a business
rule refuses (422) is declared by the view itself, with `error_response(...)` in extend_schema.
"""

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers

BODY_METHODS = ("POST", "PUT", "PATCH")

# DRF's CharField refuses a NUL and, unless allow_blank, text that is empty once stripped of what
# Python's str.strip() removes; these patterns say the same in the schema (escapes that both
# ECMA and Python regular expressions read alike), so that no schema-valid text is refused.
_NO_NUL = r"^[^\x00]*$"
_WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_NOT_BLANK_NO_NUL = rf"^[^\x00]*[^\x00{_WHITESPACE}][^\x00]*$"


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="stable name of the error, e.g. invalid_request, unknown_product")
    message = serializers.CharField(help_text="what went wrong, written for a person")
    details = serializers.JSONField(
        required=False, help_text="plain values about the error, e.g. the invalid fields and why"
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def error_response(description: str) -> OpenApiResponse:
    """An error answer for `extend_schema(responses={...})`."""
    return OpenApiResponse(response=ErrorSerializer, description=description)


ERRORS = {
    400: "The request could not be read or has invalid fields (invalid_request, malformed_request).",
    401: "No credential, or one that is not valid (not_authenticated, authentication_failed).",
    403: "The credential may not do this (permission_denied).",
    404: "There is nothing at this path (not_found).",
    413: "The body is larger than the server takes (payload_too_large).",
    415: "The body is not JSON (unsupported_media_type).",
    429: "Too many requests; Retry-After says when to try again (rate_limited).",
}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema of an operation, with its error answers documented."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in self._error_statuses(operation):
            responses.setdefault(
                str(status), self._get_response_for_code(error_response(ERRORS[status]), str(status))
            )
        return operation

    def _map_serializer_field(self, field: Any, direction: str, bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and not field.read_only
            and isinstance(schema, dict)
            and schema.get("type") == "string"
            and not {"pattern", "format", "enum"} & schema.keys()
        ):
            blank_refused = not field.allow_blank and field.trim_whitespace
            schema["pattern"] = _NOT_BLANK_NO_NUL if blank_refused else _NO_NUL
        return schema

    def _error_statuses(self, operation: dict[str, Any]) -> list[int]:
        statuses = []
        has_body = self.method in BODY_METHODS and "requestBody" in operation
        has_query = any(parameter["in"] == "query" for parameter in operation.get("parameters", []))
        if has_body or has_query:
            statuses.append(400)
        if self._needs_credentials():
            statuses += [401, 403]
        if "{" in self.path:
            statuses.append(404)
        if has_body:
            statuses += [413, 415]
        if self.view.get_throttles():
            statuses.append(429)
        return statuses

    def _needs_credentials(self) -> bool:
        checks = self.view.get_permissions()
        return bool(checks) and not all(isinstance(check, permissions.AllowAny) for check in checks)
