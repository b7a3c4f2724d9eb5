from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "legacy.shop"
    label = "shop"
