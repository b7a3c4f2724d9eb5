"""Each MES API key is throttled at MES_API_RATE_LIMIT, unless MES_API_KEY_RATE_LIMITS gives its
name a rate of its own (a service pricing its customers' orders needs more than a partner)."""

from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from legacy.mes.authentication import ApiKeyRateThrottle
from legacy.mes.models import ApiKey

pytestmark = pytest.mark.django_db


def allowed(key: ApiKey, attempts: int) -> int:
    cache.delete(f"throttle_mes_api_{key.pk}")
    count = 0
    for _ in range(attempts):
        request = Request(APIRequestFactory().post("/mes/api/quotes/"))
        request.user = key
        count += ApiKeyRateThrottle().allow_request(request, view=None)
    cache.delete(f"throttle_mes_api_{key.pk}")
    return count


def test_a_named_key_gets_its_own_rate_and_the_others_the_default(settings: Any) -> None:
    settings.MES_API_RATE_LIMIT = "2/min"
    settings.MES_API_KEY_RATE_LIMITS = {"shop-service": "5/s"}
    service = ApiKey.objects.create(name="shop-service", prefix="svc", key_hash="a" * 64)
    partner = ApiKey.objects.create(name="partner", prefix="ptn", key_hash="b" * 64)
    assert allowed(service, 8) == 5
    assert allowed(partner, 8) == 2
