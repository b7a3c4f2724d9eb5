"""Routes of the migrations process (`manage.py migrate_data`): only the operational ones."""

from django.urls import include, path

urlpatterns = [path("", include("ops.urls"))]

handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
