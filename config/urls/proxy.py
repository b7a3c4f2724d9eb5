"""Routes of the proxy process's own Django side, all under /_strangler/ (everything else is proxied):
health and metrics, the staff API of the control plane, the admin and the staff ops page."""

from django.contrib import admin
from django.urls import include, path

from strangler.views import ops_page

urlpatterns = [
    path("_strangler/", include("ops.urls")),
    path("_strangler/api/", include("strangler.urls")),
    path("_strangler/admin/", admin.site.urls),
    path("_strangler/ops/", ops_page, name="strangler-ops"),
]

handler400 = "ops.errors.handler400"
handler403 = "ops.errors.handler403"
handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
