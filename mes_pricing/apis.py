"""The public pricing API: quotes behind an API key, on the legacy contract (POST /mes/api/quotes/)
and on the versioned POST /pricing/api/v1/quotes/ (same body, same answers)."""

from typing import Any

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mes_pricing.authentication import ApiKeyAuthentication, ApiKeyRateThrottle, HasApiKey
from mes_pricing.selectors import Quote, quote_for_sku
from ops.json_fields import JsonCharField, JsonIntegerField
from ops.openapi import error_response

CURRENCY = "EUR"


class PublicApi(APIView):
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


def quote_body(quote: Quote) -> dict[str, Any]:
    """The legacy contract's body, key for key (the monolith's QuoteApi builds the same)."""
    breakdown = quote.breakdown
    return {
        "sku": quote.sku,
        "options": quote.options,
        "quantity": breakdown.quantity,
        "unit_price": str(breakdown.unit_price),
        "total": str(breakdown.total),
        "currency": CURRENCY,
        "breakdown": {
            "materials": str(breakdown.materials),
            "labour": str(breakdown.labour),
            "overhead": str(breakdown.overhead),
            "margin": str(breakdown.margin),
            "discount_percent": str(breakdown.discount_percent),
        },
    }


QUOTE_SCHEMA = extend_schema(
    request=QuoteRequestSerializer,
    responses={
        200: QuoteSerializer,
        422: error_response(
            "No quote: an unknown product, an unknown or duplicate option, no active pricing rule or "
            "incomplete cost data (unknown_product, unknown_option, duplicate_option, pricing_unavailable)."
        ),
    },
)


class QuoteApi(PublicApi):
    """POST /mes/api/quotes/: the monolith's contract, kept for its existing users."""

    @extend_schema(
        operation_id="mes_api_quotes_create",
        summary="Price a product (legacy contract; same as /pricing/api/v1/quotes/)",
    )
    @QUOTE_SCHEMA
    def post(self, request: Request) -> Response:
        serializer = QuoteRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        quote = quote_for_sku(sku=data["sku"], option_codes=data["options"], quantity=data["quantity"])
        return Response(quote_body(quote))


class QuoteV1Api(QuoteApi):
    """POST /pricing/api/v1/quotes/: the documented, versioned route."""

    @extend_schema(
        operation_id="pricing_v1_quotes_create",
        summary="Price a product: materials, labour and options under the active rule, less discount",
    )
    @QUOTE_SCHEMA
    def post(self, request: Request) -> Response:
        return super().post(request)


class PricingSchemaApi(SpectacularAPIView):
    """The OpenAPI schema of the public pricing API (both quote routes)."""

    custom_settings = {
        "TITLE": "Pricing API",
        "VERSION": "1.0.0",
        "DESCRIPTION": "Quotes of the pricing service; see docs/pricing-api.md.",
        # The monolith's enum names (order and production statuses) are not part of this API.
        "ENUM_NAME_OVERRIDES": {},
    }
