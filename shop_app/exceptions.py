"""What the shop refuses when an order is placed, as typed errors (answered at the API edge).

Codes and messages are the legacy shop's, so a customer cannot tell which side answered.
"""

from typing import Any

from ops.errors import ApplicationError


class OrderRefused(ApplicationError):
    """An order cannot be placed; nothing of it was stored."""


class EmptyOrder(OrderRefused):
    code = "empty_order"

    def __init__(self) -> None:
        super().__init__("An order needs at least one line.")


class TooManyLines(OrderRefused):
    code = "too_many_lines"

    def __init__(self, *, limit: int) -> None:
        super().__init__(f"An order has at most {limit} lines.")


class UnknownProduct(OrderRefused):
    code = "unknown_product"

    def __init__(self, *, skus: list[str]) -> None:
        super().__init__(f"Unknown or unavailable product: {', '.join(skus)}.", details={"unknown": skus})


class OrderLineRefused(OrderRefused):
    """The pricing refused one line (an unknown or duplicate option, ...): its code and details,
    the line named in the message."""

    def __init__(self, *, line_number: int, code: str, message: str, details: dict[str, Any] | None) -> None:
        super().__init__(f"Line {line_number}: {message}", details=details)
        self.code = code
        self.line_number = line_number


class PricingUnavailable(OrderRefused):
    """The pricing answered that it cannot price anything (no active pricing rule): a 422, as legacy."""

    code = "pricing_unavailable"


class PricingServiceUnavailable(Exception):
    """The pricing service did not answer in time, could not be reached, or failed: no price, so
    no order. The API edge answers 503 (code pricing_unavailable) with a Retry-After."""

    code = "pricing_unavailable"

    def __init__(self, reason: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds
        self.message = "Prices cannot be calculated right now; nothing was stored. Please try again shortly."
