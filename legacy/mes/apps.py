from django.apps import AppConfig


class MesConfig(AppConfig):
    name = "legacy.mes"
    label = "mes"
