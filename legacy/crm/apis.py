"""Staff API of the CRM: customers, orders, confirm or cancel an order, notes. Staff only."""

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from legacy.crm import selectors
from legacy.crm.models import Note
from legacy.crm.services import note_add, order_cancel, order_confirm
from legacy.shop.models import Customer, Order, OrderStatus
from legacy.shop.serializers import OrderLineSerializer, OrderStatusChangeSerializer
from ops.json_fields import JsonCharField
from ops.openapi import error_response


class StaffApi(APIView):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]


class CustomerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["id", "email", "name", "company", "created_at"]


class StaffOrderSerializer(serializers.ModelSerializer):
    customer = CustomerSerializer()
    lines = OrderLineSerializer(many=True)
    history = OrderStatusChangeSerializer(many=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "public_id",
            "customer",
            "status",
            "production_stage",
            "total",
            "currency",
            "created_at",
            "sent_to_mes_at",
            "lines",
            "history",
        ]


class NoteSerializer(serializers.ModelSerializer):
    text = JsonCharField()

    class Meta:
        model = Note
        fields = ["id", "author", "text", "order", "created_at"]
        read_only_fields = ["id", "author", "order", "created_at"]


class CancelSerializer(serializers.Serializer):
    reason = JsonCharField(max_length=300)


class CustomerListApi(StaffApi, generics.ListAPIView):
    serializer_class = CustomerSerializer
    queryset = Customer.objects.order_by("id")


class CustomerDetailApi(StaffApi, generics.RetrieveAPIView):
    serializer_class = CustomerSerializer
    queryset = Customer.objects.all()


@extend_schema_view(
    get=extend_schema(
        parameters=[
            OpenApiParameter("status", enum=OrderStatus.values, description="only orders in this status")
        ]
    )
)
class OrderListApi(StaffApi, generics.ListAPIView):
    serializer_class = StaffOrderSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        wanted = self.request.query_params.get("status")
        # An empty ?status= is refused as well: read as "any status", it would hide a client's bug.
        if wanted is not None and wanted not in OrderStatus.values:
            raise serializers.ValidationError({"status": [f"Choose one of {', '.join(OrderStatus.values)}."]})
        return selectors.order_list(status=wanted or None)


class OrderDetailApi(StaffApi, generics.RetrieveAPIView):
    serializer_class = StaffOrderSerializer
    queryset = selectors.order_list(status=None)


class OrderConfirmApi(StaffApi):
    @extend_schema(
        request=None,
        responses={
            200: StaffOrderSerializer,
            422: error_response("Only a placed order can be confirmed (invalid_transition)."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(Order, pk=pk)
        order_confirm(order_id=pk, actor=request.user.get_username(), at=timezone.now())
        return Response(StaffOrderSerializer(selectors.order_list(status=None).get(pk=pk)).data)


class OrderCancelApi(StaffApi):
    @extend_schema(
        request=CancelSerializer,
        responses={
            200: StaffOrderSerializer,
            422: error_response("An order sent to the MES cannot be cancelled (invalid_transition)."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        get_object_or_404(Order, pk=pk)
        serializer = CancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order_cancel(
            order_id=pk,
            actor=request.user.get_username(),
            reason=serializer.validated_data["reason"],
            at=timezone.now(),
        )
        return Response(StaffOrderSerializer(selectors.order_list(status=None).get(pk=pk)).data)


class OrderNotesApi(StaffApi):
    @extend_schema(
        operation_id="crm_api_orders_notes_list",
        responses=inline_serializer("OrderNotes", {"results": NoteSerializer(many=True)}),
    )
    def get(self, request: Request, pk: int) -> Response:
        order = get_object_or_404(Order, pk=pk)
        return Response({"results": NoteSerializer(order.notes.all(), many=True).data})

    @extend_schema(
        request=NoteSerializer,
        responses={201: NoteSerializer, 422: error_response("A note needs text (empty_note).")},
    )
    def post(self, request: Request, pk: int) -> Response:
        order = get_object_or_404(Order, pk=pk)
        serializer = NoteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        note = note_add(
            customer=order.customer,
            order=order,
            author=request.user.get_username(),
            text=serializer.validated_data["text"],
        )
        return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)
