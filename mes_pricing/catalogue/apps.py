from django.apps import AppConfig


class CatalogueCostsConfig(AppConfig):
    """The projection of the catalogue's cost data, on the pricing database."""

    name = "mes_pricing.catalogue"
    label = "mes_pricing_catalogue"
