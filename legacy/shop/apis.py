"""Customer API of the shop: catalogue, placing orders, following my orders."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from legacy.mes.exceptions import PricingServiceUnavailable
from legacy.shop import selectors
from legacy.shop.authentication import CustomerTokenAuthentication, IsCustomer
from legacy.shop.serializers import OrderPlaceSerializer, OrderSerializer, ProductSerializer
from legacy.shop.services import OrderLineRequest, order_place
from ops.errors import error_body
from ops.openapi import error_response


class ProductListApi(generics.ListAPIView):
    serializer_class = ProductSerializer
    queryset = selectors.product_list()


class ProductDetailApi(generics.RetrieveAPIView):
    serializer_class = ProductSerializer
    queryset = selectors.product_list()
    lookup_field = "sku"


class CustomerApi(APIView):
    authentication_classes = [CustomerTokenAuthentication]
    permission_classes = [IsCustomer]


class OrderListCreateApi(CustomerApi):
    @extend_schema(
        operation_id="shop_api_orders_list",
        responses=inline_serializer("MyOrders", {"results": OrderSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        orders = selectors.order_list_for(customer=request.user)[:50]
        return Response({"results": OrderSerializer(orders, many=True).data})

    @extend_schema(
        request=OrderPlaceSerializer,
        responses={
            201: OrderSerializer,
            422: error_response(
                "The order is refused and nothing was stored: an unknown product or option, a "
                "duplicate option, or no active pricing rule (unknown_product, unknown_option, "
                "duplicate_option, invalid_quantity, pricing_unavailable)."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = OrderPlaceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            order = order_place(
                customer=request.user,
                lines=[OrderLineRequest(**line) for line in serializer.validated_data["lines"]],
                at=timezone.now(),
            )
        except PricingServiceUnavailable as exc:
            # Only with PRICING_API_URL set: the pricing service could not price the order just now.
            return Response(
                error_body(exc.code, exc.message),
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": str(exc.retry_after_seconds)},
            )
        order = selectors.order_get_for(customer=request.user, public_id=str(order.public_id))
        return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)


class OrderDetailApi(CustomerApi):
    @extend_schema(responses=OrderSerializer)
    def get(self, request: Request, public_id: str) -> Response:
        order = get_object_or_404(selectors.order_list_for(customer=request.user), public_id=public_id)
        return Response(OrderSerializer(order).data)
