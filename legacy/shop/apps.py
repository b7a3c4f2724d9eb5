"""The legacy shop app: its label is `legacy_shop`, so that it never collides with the extracted
service of the same name; every model names its table (`shop_...`) in its Meta, so the label
change moved no table and CDC and SQL keep reading the same names."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "legacy.shop"
    label = "legacy_shop"
