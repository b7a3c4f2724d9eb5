"""The deprecated API's own answer past its sunset (for a caller that does not come through the
proxy, which answers 410 itself): 410 in the JSON error shape, still with the headers."""

import pytest
from django.test import Client, override_settings

from mes_pricing.models import ApiKey, hash_api_key

pytestmark = pytest.mark.django_db(databases=["default", "pricing"])


@override_settings(
    ROOT_URLCONF="config.urls.mes_pricing",
    MES_PRODUCTION_ORDERS_SUNSET="Thu, 01 Jan 2026 00:00:00 GMT",
    MES_PRODUCTION_ORDERS_DEPRECATED_AT="2025-06-01T00:00:00Z",
)
@pytest.mark.parametrize("path", ["/mes/api/production-orders/", "/mes/api/production-orders/1/"])
def test_past_its_sunset_the_service_answers_410_with_the_headers(path: str) -> None:
    ApiKey.objects.using("pricing").create(
        name="partner", prefix="test-key", key_hash=hash_api_key("test-key-p")
    )
    response = Client().get(path, headers={"X-API-Key": "test-key-p"})
    assert response.status_code == 410
    assert response.json() == {
        "error": {
            "code": "gone",
            "message": f"{path} was retired on Thu, 01 Jan 2026 00:00:00 GMT.",
            "details": {"sunset": "Thu, 01 Jan 2026 00:00:00 GMT"},
        }
    }
    assert response["Sunset"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    assert response["Deprecation"] == "@1748736000"


def test_unreadable_or_inverted_dates_are_reported_by_the_system_check() -> None:
    from mes_pricing.production_orders.apps import deprecation_settings_check

    assert deprecation_settings_check() == []
    with override_settings(MES_PRODUCTION_ORDERS_SUNSET="soon"):
        assert [m.id for m in deprecation_settings_check()] == ["mes_public_production.E001"]
    with override_settings(MES_PRODUCTION_ORDERS_SUNSET="2020-01-01T00:00:00Z"):
        assert [m.id for m in deprecation_settings_check()] == ["mes_public_production.E002"]
