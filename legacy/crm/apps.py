from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "legacy.crm"
    label = "crm"
