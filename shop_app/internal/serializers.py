"""The shapes of the internal API: exactly the legacy CRM's staff API shapes (legacy/crm/apis.py),
so that the CRM service passes them on unchanged."""

from rest_framework import serializers

from ops.json_fields import JsonCharField
from shop_app.models import Customer, Order
from shop_app.serializers import OrderLineSerializer, OrderStatusChangeSerializer


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


class CancelSerializer(serializers.Serializer):
    reason = JsonCharField(max_length=300)
