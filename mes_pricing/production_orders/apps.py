from typing import Any

from django.apps import AppConfig
from django.core import checks


class ProductionOrdersProjectionConfig(AppConfig):
    """The read-only projection of production orders behind the deprecated /mes/api/production-orders/."""

    name = "mes_pricing.production_orders"
    label = "mes_public_production"

    def ready(self) -> None:
        checks.register(deprecation_settings_check)


def deprecation_settings_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A date the service cannot read would answer every request with a 500: say so at start."""
    from django.conf import settings

    from ops.deprecation import moment_parse

    problems: list[checks.CheckMessage] = []
    moments = {}
    for name in ("MES_PRODUCTION_ORDERS_DEPRECATED_AT", "MES_PRODUCTION_ORDERS_SUNSET"):
        try:
            moments[name] = moment_parse(getattr(settings, name))
        except ValueError as exc:
            problems.append(checks.Error(f"{name}: {exc}", id="mes_public_production.E001"))
    if (
        len(moments) == 2
        and moments["MES_PRODUCTION_ORDERS_SUNSET"] < moments["MES_PRODUCTION_ORDERS_DEPRECATED_AT"]
    ):
        problems.append(
            checks.Error(
                "MES_PRODUCTION_ORDERS_SUNSET is before MES_PRODUCTION_ORDERS_DEPRECATED_AT",
                id="mes_public_production.E002",
            )
        )
    return problems
