"""Routes of the legacy monolith: shop pages and API, CRM staff API, MES external API."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("", include("ops.urls")),
    path("admin/", admin.site.urls),
    path("shop/", include("legacy.shop.urls")),
    path("crm/api/", include("legacy.crm.urls")),
    path("mes/api/", include("legacy.mes.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]

handler400 = "ops.errors.handler400"
handler403 = "ops.errors.handler403"
handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
