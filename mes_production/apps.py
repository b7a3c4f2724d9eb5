from django.apps import AppConfig


class MesProductionConfig(AppConfig):
    """The extracted production service: production orders and their stages, driven by events."""

    name = "mes_production"
    label = "mes_production"
