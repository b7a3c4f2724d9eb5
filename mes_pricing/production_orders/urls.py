"""The deprecated /mes/api/production-orders/ routes."""

urlpatterns: list = []
