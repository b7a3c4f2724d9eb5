"""The production service's internal routes (none is reachable from outside)."""

urlpatterns: list = []
