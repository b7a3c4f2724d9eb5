from django.apps import AppConfig


class StranglerConfig(AppConfig):
    name = "strangler"
    label = "strangler"
    default_auto_field = "django.db.models.BigAutoField"
