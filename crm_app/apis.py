"""Staff API of the CRM service: the legacy CRM's /crm/api/ contracts, served from two places.

Customers and orders are the shop's: these views ask the shop's internal API (crm_app/shop_client.py)
and pass its answer on, which is the legacy body for the same query. Notes are the CRM's own
(crm_note on the crm database). A shop that cannot answer gives the staff client 503 in the error
shape, never a hang. Staff only: a DRF token or a session of this service's own staff users.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_app import selectors
from crm_app.models import Note
from crm_app.services import note_add
from crm_app.shop_client import ShopAnswer, ShopUnavailable, shop_call
from ops.errors import error_body
from ops.json_fields import JsonCharField

SHOP_UNAVAILABLE = "shop_unavailable"


class NoteSerializer(serializers.ModelSerializer):
    text = JsonCharField()
    order = serializers.IntegerField(source="order_id", read_only=True, allow_null=True)

    class Meta:
        model = Note
        fields = ["id", "author", "text", "order", "created_at"]
        read_only_fields = ["id", "author", "order", "created_at"]


class ShopUnavailableResponse(Response):
    def __init__(self, exc: ShopUnavailable) -> None:
        super().__init__(
            error_body(SHOP_UNAVAILABLE, exc.message), status=status.HTTP_503_SERVICE_UNAVAILABLE
        )
        self["Retry-After"] = "5"


class StaffApi(APIView):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, ShopUnavailable):
            return ShopUnavailableResponse(exc)
        return super().handle_exception(exc)


def _page_link(request: Request, link: str | None) -> str | None:
    """The shop's link to another page, made this request's (same query, this host and path)."""
    if not link:
        return link
    own = urlsplit(request.build_absolute_uri())
    return urlunsplit((own.scheme, own.netloc, own.path, urlsplit(link).query, ""))


def _relayed(request: Request, answer: ShopAnswer) -> Response:
    body = answer.body
    if isinstance(body, dict) and "results" in body and "count" in body:
        body = {**body, "next": _page_link(request, body.get("next"))}
        body["previous"] = _page_link(request, answer.body.get("previous"))
        body = {key: body[key] for key in answer.body}  # the shop's key order
    return Response(body, status=answer.status)


def _query(request: Request) -> str:
    return str(request.META.get("QUERY_STRING", ""))


class CustomerListApi(StaffApi):
    def get(self, request: Request) -> Response:
        return _relayed(request, shop_call("GET", "customers/", query=_query(request)))


class CustomerDetailApi(StaffApi):
    def get(self, request: Request, pk: int) -> Response:
        return _relayed(request, shop_call("GET", f"customers/{pk}/"))


class OrderListApi(StaffApi):
    def get(self, request: Request) -> Response:
        return _relayed(request, shop_call("GET", "orders/", query=_query(request)))


class OrderDetailApi(StaffApi):
    def get(self, request: Request, pk: int) -> Response:
        return _relayed(request, shop_call("GET", f"orders/{pk}/"))


class OrderConfirmApi(StaffApi):
    @extend_schema(request=None)
    def post(self, request: Request, pk: int) -> Response:
        actor = request.user.get_username()
        return _relayed(request, shop_call("POST", f"orders/{pk}/confirm/", actor=actor))


class OrderCancelApi(StaffApi):
    def post(self, request: Request, pk: int) -> Response:
        # The body is parsed here (a malformed one is this service's 400, as legacy's) and passed on
        # as it came: the shop validates it, so its refusals read as the legacy CRM's.
        answer = shop_call(
            "POST", f"orders/{pk}/cancel/", body=request.data, actor=request.user.get_username()
        )
        return _relayed(request, answer)


class OrderNotesApi(StaffApi):
    @extend_schema(
        operation_id="crm_api_orders_notes_list",
        responses=inline_serializer("OrderNotes", {"results": NoteSerializer(many=True)}),
    )
    def get(self, request: Request, pk: int) -> Response:
        order = shop_call("GET", f"orders/{pk}/")
        if order.status != status.HTTP_200_OK:
            return _relayed(request, order)
        return Response({"results": NoteSerializer(selectors.order_notes(order_id=pk), many=True).data})

    @extend_schema(request=NoteSerializer, responses={201: NoteSerializer})
    def post(self, request: Request, pk: int) -> Response:
        order = shop_call("GET", f"orders/{pk}/")
        if order.status != status.HTTP_200_OK:
            return _relayed(request, order)
        serializer = NoteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        note = note_add(
            customer_id=order.body["customer"]["id"],
            order_id=pk,
            author=request.user.get_username(),
            text=serializer.validated_data["text"],
        )
        return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)
