"""What the shop refuses when an order is placed, as typed errors (answered at the API edge)."""

from legacy.mes.exceptions import PricingRefused
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
    """One line could not be priced; it keeps the pricing's code and details and names the line."""

    def __init__(self, *, line_number: int, cause: PricingRefused) -> None:
        super().__init__(f"Line {line_number}: {cause.message}", details=cause.details)
        self.code = cause.code
        self.line_number = line_number
