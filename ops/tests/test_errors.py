"""The API edge answers a typed domain refusal in the one error shape; the domain knows no HTTP."""

import pytest
from rest_framework.exceptions import APIException

from ops.errors import ApplicationError, ApplicationNotFound, api_exception_handler


class NothingInStock(ApplicationError):
    code = "nothing_in_stock"


class ShelfMissing(ApplicationNotFound):
    pass


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            NothingInStock("No chairs left.", details={"sku": "CH-1"}),
            422,
            {"error": {"code": "nothing_in_stock", "message": "No chairs left.", "details": {"sku": "CH-1"}}},
        ),
        (
            ShelfMissing("Shelf 4 does not exist."),
            404,
            {"error": {"code": "not_found", "message": "Shelf 4 does not exist."}},
        ),
    ],
)
def test_a_domain_refusal_becomes_its_status_and_the_error_shape(
    error: ApplicationError, status: int, body: dict
) -> None:
    response = api_exception_handler(error, {})
    assert response is not None
    assert (response.status_code, response.data) == (status, body)


def test_domain_errors_are_not_drf_exceptions() -> None:
    # A service raising them can run from a command or a consumer with no DRF in sight.
    assert not issubclass(ApplicationError, APIException)
