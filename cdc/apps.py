from django.apps import AppConfig


class CdcConfig(AppConfig):
    name = "cdc"
    label = "cdc"
    default_auto_field = "django.db.models.BigAutoField"
