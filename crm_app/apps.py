from django.apps import AppConfig


class CrmAppConfig(AppConfig):
    """The extracted CRM: staff API and notes on the crm database."""

    name = "crm_app"
    label = "crm_app"
