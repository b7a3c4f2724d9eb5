from django.apps import AppConfig


class ProductionOrdersProjectionConfig(AppConfig):
    """The read-only projection of production orders behind the deprecated /mes/api/production-orders/."""

    name = "mes_pricing.production_orders"
    label = "mes_public_production"
