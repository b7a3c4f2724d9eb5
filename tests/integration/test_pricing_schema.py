"""The pricing service's OpenAPI schema (/pricing/api/v1/schema/) tells the truth: schemathesis
generates requests for both quote routes (the legacy /mes/api/quotes/ and /pricing/api/v1/quotes/),
valid and invalid, sends them with a valid key to the running mes_pricing web process, and checks
each answer: no 5xx, only documented statuses, bodies and content types as documented, invalid input
refused. Bounded and derandomized, as the monolith's schema test (test_legacy_api_schema.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from ops.process_group import ProcessGroup
from tests.integration.pricing_stack import (
    PricingService,
    pricing_databases_flush,
    pricing_web_start,
    pricing_world_seed,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(databases=["default", "pricing"])]

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"allow-extra-parameters": False, "with-security-parameters": False},
        # A valid request may name a product that does not exist (422), never be malformed (400).
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "422", "429"]}},
    }
)


@pytest.fixture(scope="module")
def pricing_with_key(
    live_env: dict[str, str], django_db_blocker: object
) -> Iterator[tuple[PricingService, str]]:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        key = pricing_world_seed(key_name="schema", key_raw=f"schema-{secrets.token_urlsafe(24)}")
    with ProcessGroup() as group:
        yield pricing_web_start(group, live_env, tag="schema"), key
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        pricing_databases_flush()


def failures_of(operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, key: str) -> str:
    """'' when every generated case passes every check; else what failed."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def each_case(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"X-API-Key": key}, checks=CHECKS, timeout=10)

    try:
        each_case()
    except (AssertionError, BaseExceptionGroup) as exc:  # one check failed, or several
        return f"{operation.label} ({mode.value}): {exc}"
    return ""


def test_both_quote_routes_answer_as_the_schema_says(pricing_with_key: tuple[PricingService, str]) -> None:
    pricing, key = pricing_with_key
    schema = schemathesis.openapi.from_url(f"{pricing.base_url}/pricing/api/v1/schema/", config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(operation.label for operation in operations) == [
        "POST /mes/api/quotes/",
        "POST /pricing/api/v1/quotes/",
    ]
    failures = [
        failure
        for operation in operations
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
        if (failure := failures_of(operation, mode, key))
    ]
    assert not failures, "\n\n".join(failures)


def test_a_quote_of_a_seeded_product_matches_the_schema(pricing_with_key: tuple[PricingService, str]) -> None:
    """Generated SKUs name no product: one real quote, so the 200 answer is checked against the schema too."""
    pricing, key = pricing_with_key
    schema = schemathesis.openapi.from_url(f"{pricing.base_url}/pricing/api/v1/schema/", config=CONFIG)
    from mes_pricing.catalogue.models import CostProduct

    sku = CostProduct.objects.using("pricing").filter(active=True).values_list("sku", flat=True).first()
    assert sku, "the legacy test database holds no active product to quote"
    operation = schema["/pricing/api/v1/quotes/"]["POST"]
    case = operation.Case(body={"sku": sku, "quantity": 3, "options": []})
    response = case.call(headers={"X-API-Key": key}, timeout=10)
    assert response.status_code == 200, response.text
    case.validate_response(response, checks=CHECKS)
    assert requests.get(f"{pricing.base_url}/pricing/api/v1/schema/", timeout=5).status_code == 200
