"""The legacy mes app: its label is `legacy_mes`, so that it never collides with the extracted
service of the same name; every model names its table (`mes_...`) in its Meta, so the label
change moved no table and CDC and SQL keep reading the same names."""

from django.apps import AppConfig


class MesConfig(AppConfig):
    name = "legacy.mes"
    label = "legacy_mes"
