"""The internal API's views: bodies, statuses and errors exactly as the legacy CRM's staff API
answers the same request (legacy/crm/apis.py), for the CRM service to pass on. The staff member
the CRM acts for comes in the X-Acting-User header (recorded as the status change's actor)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils import timezone
from rest_framework import generics, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shop_app.internal import selectors
from shop_app.internal.authentication import ServiceTokenAuthentication
from shop_app.internal.serializers import CancelSerializer, CustomerSerializer, StaffOrderSerializer
from shop_app.internal.services import order_cancel, order_confirm
from shop_app.models import Order, OrderStatus

ACTOR_HEADER = "HTTP_X_ACTING_USER"
MAX_ACTOR_LENGTH = 64  # OrderStatusChange.actor


class InternalApi(APIView):
    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def actor(self, request: Request) -> str:
        actor = str(request.META.get(ACTOR_HEADER, "")).strip()[:MAX_ACTOR_LENGTH]
        return actor or request.user.get_username()


class CustomerListApi(InternalApi, generics.ListAPIView):
    serializer_class = CustomerSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.customer_list()


class CustomerDetailApi(InternalApi, generics.RetrieveAPIView):
    serializer_class = CustomerSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.customer_list()


class OrderListApi(InternalApi, generics.ListAPIView):
    serializer_class = StaffOrderSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        wanted = self.request.query_params.get("status")
        # An empty ?status= is refused as well, as the legacy CRM does.
        if wanted is not None and wanted not in OrderStatus.values:
            raise serializers.ValidationError({"status": [f"Choose one of {', '.join(OrderStatus.values)}."]})
        return selectors.order_list(status=wanted or None)


class OrderDetailApi(InternalApi, generics.RetrieveAPIView):
    serializer_class = StaffOrderSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.order_list(status=None)


class OrderConfirmApi(InternalApi):
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(Order, pk=pk)
        order_confirm(order_id=pk, actor=self.actor(request), at=timezone.now())
        return Response(StaffOrderSerializer(selectors.order_list(status=None).get(pk=pk)).data)


class OrderCancelApi(InternalApi):
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(Order, pk=pk)
        serializer = CancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order_cancel(
            order_id=pk,
            actor=self.actor(request),
            reason=serializer.validated_data["reason"],
            at=timezone.now(),
        )
        return Response(StaffOrderSerializer(selectors.order_list(status=None).get(pk=pk)).data)
