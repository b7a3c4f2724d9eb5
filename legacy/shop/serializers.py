"""Shop API shapes: products, order requests and orders."""

from rest_framework import serializers

from legacy.shop.models import Order, OrderLine, OrderStatusChange, Product, ProductOption
from ops.json_fields import JsonCharField, JsonIntegerField


class ProductOptionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProductOption
        fields = ["code", "name"]


class ProductSerializer(serializers.ModelSerializer):
    options = ProductOptionSerializer(many=True, read_only=True)

    class Meta:
        model = Product
        fields = ["sku", "name", "description", "options"]


class OrderLineRequestSerializer(serializers.Serializer):
    sku = JsonCharField(max_length=32)
    quantity = JsonIntegerField(min_value=1, max_value=10_000)
    options = serializers.ListField(
        child=JsonCharField(max_length=32), required=False, default=list, max_length=20
    )


class OrderPlaceSerializer(serializers.Serializer):
    # A ListField rather than many=True: the schema then says minItems/maxItems, which the
    # request obeys (drf-spectacular documents neither for a list serializer).
    lines = serializers.ListField(
        child=OrderLineRequestSerializer(), allow_empty=False, min_length=1, max_length=50
    )


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
