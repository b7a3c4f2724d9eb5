"""One error format for every API: {"error": {"code", "message", "details"}}, never a bare 500."""

from typing import Any

import structlog
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import Resolver404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = structlog.get_logger(__name__)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


class ApplicationError(Exception):
    """Base of the typed errors domain code raises when a business rule refuses something.

    It knows nothing of HTTP: `code` is the stable name a caller can branch on, the message is
    written for a person, `details` carries plain values. Only the API edge turns it into a
    response (422 in the error shape; a subclass of ApplicationNotFound is a 404).
    """

    code: str = "unprocessable"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ApplicationNotFound(ApplicationError):
    """What a domain operation was asked to act on does not exist."""

    code = "not_found"


class DomainError(exceptions.APIException):
    """An API view refused the request; the message is written for the caller. Domain code
    raises an ApplicationError instead, which knows no HTTP."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "unprocessable"

    def __init__(self, message: str, *, code: str = "unprocessable", details: Any = None) -> None:
        super().__init__(detail=message, code=code)
        self.error_code = code
        self.details = details


_CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "invalid_request",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.Throttled: "rate_limited",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
}


def _as_api_exception(exc: Exception) -> Exception:
    """Django's own Http404 and PermissionDenied, as DRF's exception_handler sees them."""
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    return exc


def application_error_response(exc: ApplicationError) -> Response:
    """The response of a refusal by domain code."""
    not_found = isinstance(exc, ApplicationNotFound)
    status_code = status.HTTP_404_NOT_FOUND if not_found else status.HTTP_422_UNPROCESSABLE_ENTITY
    return Response(error_body(exc.code, exc.message, exc.details), status=status_code)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        set_rollback()  # as DRF does for its own exceptions, should the request be atomic
        return application_error_response(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None  # Django turns it into a 500 through handler500, logged with the request id.
    if isinstance(exc, DomainError):
        response.data = error_body(exc.error_code, str(exc.detail), exc.details)
        return response
    # get_object_or_404 raises Django's Http404: without this it would get the code "error".
    exc = _as_api_exception(exc)
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(code, "The request has invalid fields.", exc.detail)
    else:
        detail = getattr(exc, "detail", str(exc))
        response.data = error_body(code, str(detail))
    return response


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    # A view's own Http404 ("No Order matches the given query.") says more than "no route".
    if exception is None or isinstance(exception, Resolver404) or not str(exception):
        message = f"No route for {request.path}."
    else:
        message = str(exception)
    return JsonResponse(error_body("not_found", message), status=404)


def handler500(request: HttpRequest) -> JsonResponse:
    logger.error("request.failed", path=request.path)
    return JsonResponse(error_body("internal_error", "An internal error occurred."), status=500)


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("bad_request", "The request could not be understood."), status=400)


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("permission_denied", "You may not do this."), status=403)
