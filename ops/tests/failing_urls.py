"""A URLconf for tests only: the legacy routes plus two views that fail, to see the 500 path."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls.legacy import handler400, handler403, handler404, handler500, urlpatterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view failed on purpose")


class FailingApi(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("the API failed on purpose")


urlpatterns = [
    path("test-failures/view/", failing_view),
    path("test-failures/api/", FailingApi.as_view()),
    *urlpatterns,
]
