"""Routes of the control plane's staff API."""

from django.urls import path

from strangler import apis

urlpatterns = [
    path("", apis.ApiRootApi.as_view(), name="strangler-api-root"),
    path("slices/", apis.SliceListApi.as_view(), name="strangler-slices"),
    path("slices/<slug:name>/", apis.SliceDetailApi.as_view(), name="strangler-slice"),
    path("slices/<slug:name>/<slug:action>/", apis.SliceActionApi.as_view(), name="strangler-slice-action"),
    path("routes/", apis.RouteListApi.as_view(), name="strangler-routes"),
    path("audit/", apis.AuditListApi.as_view(), name="strangler-audit"),
    path("shadow/", apis.ShadowReportApi.as_view(), name="strangler-shadow"),
    path("plan/", apis.PlanLoadApi.as_view(), name="strangler-plan"),
    path("ops/", apis.OpsOverviewApi.as_view(), name="strangler-ops-data"),
]
