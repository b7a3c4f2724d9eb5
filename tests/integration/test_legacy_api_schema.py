"""The monolith's public OpenAPI schema (/api/schema/) tells the truth: schemathesis generates
requests for every operation from the schema, valid and invalid ones, sends them over HTTP to the
running web process, and checks each answer: no 5xx, only documented status codes, bodies and
content types as documented, and invalid input refused.

Bounded so that the suite stays fast: a fixed number of examples per operation and generation
mode, derandomized (the same requests on every run; a failure prints the case to replay).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.legacy_api_world import World, credentials_for, shared_world

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

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
        "generation": {
            # Unknown query parameters are ignored, as by most HTTP APIs; the schema lists the known.
            "allow-extra-parameters": False,
            # Credentials are the test's own (credentials_for): a case made invalid only by a
            # missing credential would be sent with one. test_legacy_api_auth covers credentials.
            "with-security-parameters": False,
        },
        # A request the schema calls valid may still be refused by a business rule the schema cannot
        # express (an order for a product that does not exist: 422), never as malformed (400).
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "422", "429"]}
        },
    }
)


@pytest.fixture(scope="module")
def world(legacy_stack, django_db_blocker) -> Iterator[World]:  # type: ignore[no-untyped-def]
    yield from shared_world(django_db_blocker)


def failures_of(operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, world: World) -> str:
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
        case.call_and_validate(
            headers=credentials_for(operation.path.split("/")[1], world), checks=CHECKS, timeout=10
        )

    try:
        each_case()
    except Unsatisfiable:
        # An operation whose every input is a free-form string or absent has no invalid request.
        if mode is not schemathesis.GenerationMode.NEGATIVE:
            raise
    except (AssertionError, BaseExceptionGroup) as exc:  # one check failed, or several
        return f"{operation.label} ({mode.value}): {exc}"
    return ""


def test_every_operation_answers_as_its_schema_says(legacy_stack, world: World) -> None:  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_url(f"{legacy_stack.base_url}/api/schema/", config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, [operation.label for operation in operations]
    failures = [
        failure
        for operation in operations
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
        if (failure := failures_of(operation, mode, world))
    ]
    assert not failures, "\n\n".join(failures)
