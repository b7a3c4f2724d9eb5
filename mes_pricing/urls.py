"""The pricing service's public routes."""

urlpatterns: list = []
