"""Shop API shapes: products, order requests and orders."""

from typing import Any

from rest_framework import serializers

from legacy.shop.models import Order, OrderLine, OrderStatusChange, Product, ProductOption


class ProductOptionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProductOption
        fields = ["code", "name"]


class ProductSerializer(serializers.ModelSerializer):
    options = ProductOptionSerializer(many=True, read_only=True)

    class Meta:
        model = Product
        fields = ["sku", "name", "description", "options"]


class JsonIntegerField(serializers.IntegerField):
    """An integer that arrives as a JSON integer: DRF's IntegerField also takes "3", "3.0" and 3.0,
    so a client sending the wrong type would never learn of it."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class OrderLineRequestSerializer(serializers.Serializer):
    sku = serializers.CharField(max_length=32)
    quantity = JsonIntegerField(min_value=1, max_value=10_000)
    options = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, default=list, max_length=20
    )


class OrderPlaceSerializer(serializers.Serializer):
    lines = OrderLineRequestSerializer(many=True, allow_empty=False, max_length=50)


class OrderLineSerializer(serializers.ModelSerializer):
    sku = serializers.CharField(source="product.sku")

    class Meta:
        model = OrderLine
        fields = ["sku", "quantity", "options", "unit_price", "line_total"]


class OrderStatusChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderStatusChange
        fields = ["status", "at", "note"]


class OrderSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id")
    lines = OrderLineSerializer(many=True)
    history = OrderStatusChangeSerializer(many=True)

    class Meta:
        model = Order
        fields = ["id", "status", "production_stage", "total", "currency", "created_at", "lines", "history"]
