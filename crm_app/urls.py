"""CRM staff API routes under /crm/api/ (the legacy CRM's paths and names)."""

from django.urls import path

from crm_app import apis

urlpatterns = [
    path("customers/", apis.CustomerListApi.as_view(), name="crm-customers"),
    path("customers/<int:pk>/", apis.CustomerDetailApi.as_view(), name="crm-customer"),
    path("orders/", apis.OrderListApi.as_view(), name="crm-orders"),
    path("orders/<int:pk>/", apis.OrderDetailApi.as_view(), name="crm-order"),
    path("orders/<int:pk>/confirm/", apis.OrderConfirmApi.as_view(), name="crm-order-confirm"),
    path("orders/<int:pk>/cancel/", apis.OrderCancelApi.as_view(), name="crm-order-cancel"),
    path("orders/<int:pk>/notes/", apis.OrderNotesApi.as_view(), name="crm-order-notes"),
]
