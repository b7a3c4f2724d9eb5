from django.apps import AppConfig


class ShopAppConfig(AppConfig):
    """The extracted shop: catalogue, customers and orders on the shop database."""

    name = "shop_app"
    label = "shop_app"
