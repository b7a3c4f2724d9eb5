"""Routes of the mes_pricing process; its own routes arrive with the issue that extracts it."""

from django.urls import include, path

urlpatterns = [path("", include("ops.urls"))]

handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
