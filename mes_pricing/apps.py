from django.apps import AppConfig


class MesPricingConfig(AppConfig):
    """The extracted pricing service: quotes, pricing rules, API keys and the cost data a price needs."""

    name = "mes_pricing"
    label = "mes_pricing"
