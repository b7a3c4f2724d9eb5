"""The legacy crm app: its label is `legacy_crm`, so that it never collides with the extracted
service of the same name; every model names its table (`crm_...`) in its Meta, so the label
change moved no table and CDC and SQL keep reading the same names."""

from django.apps import AppConfig


class CrmConfig(AppConfig):
    name = "legacy.crm"
    label = "legacy_crm"
