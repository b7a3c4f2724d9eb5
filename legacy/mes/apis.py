"""The MES's external API: quotes and production orders behind one API key (the boundary problem)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from legacy.mes.authentication import ApiKeyAuthentication, ApiKeyRateThrottle, HasApiKey
from legacy.mes.models import ProductionOrder, ProductionStage
from legacy.mes.services import quote_for_sku
from ops.json_fields import JsonCharField, JsonIntegerField
from ops.openapi import error_response


class ExternalApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    throttle_classes = [ApiKeyRateThrottle]


class QuoteRequestSerializer(serializers.Serializer):
    sku = JsonCharField(max_length=32)
    quantity = JsonIntegerField(min_value=1, max_value=10_000)
    options = serializers.ListField(
        child=JsonCharField(max_length=32), required=False, default=list, max_length=20
    )


class QuoteBreakdownSerializer(serializers.Serializer):
    materials = serializers.DecimalField(max_digits=14, decimal_places=2)
    labour = serializers.DecimalField(max_digits=14, decimal_places=2)
    overhead = serializers.DecimalField(max_digits=14, decimal_places=2)
    margin = serializers.DecimalField(max_digits=14, decimal_places=2)
    discount_percent = serializers.DecimalField(max_digits=5, decimal_places=2)


class QuoteSerializer(serializers.Serializer):
    """The shape of a quote, for the schema; the view builds the body itself."""

    sku = serializers.CharField()
    options = serializers.ListField(child=serializers.CharField())
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=14, decimal_places=2)
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    breakdown = QuoteBreakdownSerializer()


class QuoteApi(ExternalApi):
    @extend_schema(
        request=QuoteRequestSerializer,
        responses={
            200: QuoteSerializer,
            422: error_response(
                "No quote: an unknown product, an unknown or duplicate option, or no active pricing "
                "rule (unknown_product, unknown_option, duplicate_option, pricing_unavailable)."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = QuoteRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        product, breakdown = quote_for_sku(
            sku=data["sku"], option_codes=data["options"], quantity=data["quantity"]
        )
        return Response(
            {
                "sku": product.sku,
                "options": sorted(data["options"]),
                "quantity": breakdown.quantity,
                "unit_price": str(breakdown.unit_price),
                "total": str(breakdown.total),
                "currency": "EUR",
                "breakdown": {
                    "materials": str(breakdown.materials),
                    "labour": str(breakdown.labour),
                    "overhead": str(breakdown.overhead),
                    "margin": str(breakdown.margin),
                    "discount_percent": str(breakdown.discount_percent),
                },
            }
        )


class ProductionStageSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProductionStage
        fields = ["status", "at"]


class ProductionOrderSerializer(serializers.ModelSerializer):
    stages = ProductionStageSerializer(many=True)

    class Meta:
        model = ProductionOrder
        fields = [
            "id",
            "order_id",
            "order_public_id",
            "status",
            "lines",
            "created_at",
            "updated_at",
            "stages",
        ]


@extend_schema_view(
    get=extend_schema(
        parameters=[
            OpenApiParameter(
                "order_id",
                {"type": "integer", "minimum": 0},
                description="only the production order of this shop order",
            )
        ]
    )
)
class ProductionOrderListApi(ExternalApi, generics.ListAPIView):
    serializer_class = ProductionOrderSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        orders = ProductionOrder.objects.prefetch_related("stages")
        order_id = self.request.query_params.get("order_id")
        if order_id is not None:
            # isdigit() also accepts digits int() refuses ("²"); only ASCII digits are an id.
            if not (order_id.isascii() and order_id.isdigit()):
                raise serializers.ValidationError({"order_id": ["Must be a whole number."]})
            orders = orders.filter(order_id=int(order_id))
        return orders


class ProductionOrderDetailApi(ExternalApi):
    @extend_schema(responses=ProductionOrderSerializer)
    def get(self, request: Request, pk: int) -> Response:
        production = get_object_or_404(ProductionOrder.objects.prefetch_related("stages"), pk=pk)
        return Response(ProductionOrderSerializer(production).data)
