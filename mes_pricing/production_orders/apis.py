"""GET /mes/api/production-orders/ and /<id>/: the monolith's external read of production orders,
kept for external users until its sunset, served from the projection with the legacy contract
(same fields, pagination, ?order_id check and errors, same X-API-Key) and the deprecation headers
on every answer (docs/mes-production-orders-deprecation.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mes_pricing.authentication import ApiKeyAuthentication, ApiKeyRateThrottle, HasApiKey
from mes_pricing.production_orders.models import ProjectedProductionOrder, ProjectedProductionStage
from mes_pricing.production_orders.selectors import (
    production_order_get,
    production_order_list,
    stages_attach,
)
from ops.deprecation import Deprecation, moment_parse
from ops.errors import DomainError

# Legacy's 404 names its model; the contract keeps the sentence.
NOT_FOUND_MESSAGE = "No ProductionOrder matches the given query."
_MAX_ID = 2**63 - 1


def production_orders_deprecation() -> Deprecation:
    return Deprecation(
        deprecated_at=moment_parse(settings.MES_PRODUCTION_ORDERS_DEPRECATED_AT),
        sunset=moment_parse(settings.MES_PRODUCTION_ORDERS_SUNSET),
        link=settings.MES_PRODUCTION_ORDERS_DEPRECATION_LINK,
    )


class Gone(DomainError):
    status_code = status.HTTP_410_GONE


class DeprecatedApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    throttle_classes = [ApiKeyRateThrottle]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # The proxy answers 410 after the sunset; this holds for a caller that reaches the service
        # some other way.
        deprecation = production_orders_deprecation()
        if deprecation.past_sunset(datetime.now(UTC)):
            sunset = deprecation.headers()["Sunset"]
            raise Gone(
                f"{request.path[:200]} was retired on {sunset}.", code="gone", details={"sunset": sunset}
            )
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in production_orders_deprecation().headers().items():
            response[name] = value
        return response


class ProductionStageSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProjectedProductionStage
        fields = ["status", "at"]


class ProductionOrderSerializer(serializers.ModelSerializer):
    stages = ProductionStageSerializer(many=True, source="stage_list")

    class Meta:
        model = ProjectedProductionOrder
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


# Not in the pricing service's schema (/pricing/api/v1/schema/, the versioned pricing API): this is
# the monolith's contract, kept only until its sunset; docs/mes-production-orders-deprecation.md.
@extend_schema_view(get=extend_schema(exclude=True))
class ProductionOrderListApi(DeprecatedApi, generics.ListAPIView):
    serializer_class = ProductionOrderSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        order_id = self.request.query_params.get("order_id")
        if order_id is None:
            return production_order_list()
        # isdigit() also accepts digits int() refuses ("²"); only ASCII digits are an id.
        if not (order_id.isascii() and order_id.isdigit()):
            raise serializers.ValidationError({"order_id": ["Must be a whole number."]})
        if int(order_id) > _MAX_ID:
            return production_order_list().none()
        return production_order_list(order_id=int(order_id))

    def paginate_queryset(self, queryset):  # type: ignore[no-untyped-def]
        page = super().paginate_queryset(queryset)
        stages_attach(page if page is not None else queryset)
        return page


class ProductionOrderDetailApi(DeprecatedApi):
    @extend_schema(exclude=True)
    def get(self, request: Request, pk: int) -> Response:
        production = production_order_get(production_order_id=pk) if pk <= _MAX_ID else None
        if production is None:
            raise exceptions.NotFound(NOT_FOUND_MESSAGE)
        return Response(ProductionOrderSerializer(production).data)
