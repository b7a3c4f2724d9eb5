"""Health, readiness and metrics endpoints served by every web process."""

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse

from ops.metrics import render_latest


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "service": settings.SERVICE})


def readyz(request: HttpRequest) -> JsonResponse:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return JsonResponse({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return JsonResponse({"status": "ready", "service": settings.SERVICE})


def metrics(request: HttpRequest) -> HttpResponse:
    body, content_type = render_latest()
    return HttpResponse(body, content_type=content_type)
