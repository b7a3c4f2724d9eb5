"""What the MES's pricing refuses, as typed errors (the API edge answers them, see ops.errors)."""

from ops.errors import ApplicationError


class ApiKeyNameTaken(ApplicationError):
    code = "api_key_name_taken"

    def __init__(self, *, name: str) -> None:
        super().__init__(f"An API key named {name!r} exists already.")


class PricingRefused(ApplicationError):
    """A quote cannot be calculated."""


class ProductNotOffered(PricingRefused):
    """No active product has this SKU."""

    code = "unknown_product"

    def __init__(self, *, sku: str) -> None:
        super().__init__(f"Unknown or unavailable product: {sku}.", details={"unknown": [sku]})


class PricingUnavailable(PricingRefused):
    code = "pricing_unavailable"

    def __init__(self) -> None:
        super().__init__("No active pricing rule is configured.")


class InvalidQuantity(PricingRefused):
    code = "invalid_quantity"

    def __init__(self, *, quantity: int) -> None:
        super().__init__(f"Quantity must be at least 1, not {quantity}.")


class DuplicateOption(PricingRefused):
    code = "duplicate_option"

    def __init__(self) -> None:
        super().__init__("An option is chosen twice.")


class UnknownOption(PricingRefused):
    code = "unknown_option"

    def __init__(self, *, sku: str, unknown: list[str], available: list[str]) -> None:
        super().__init__(
            f"Product {sku} has no option {', '.join(unknown)}.",
            details={"unknown": unknown, "available": available},
        )


class RemotePricingRefused(PricingRefused):
    """The pricing service refused a quote (422): its code, message and details, as it sent them
    (they are the same as this module's refusals, the service being the extracted copy of them)."""

    def __init__(self, *, code: str, message: str, details: dict | None) -> None:
        super().__init__(message, details=details)
        self.code = code


class PricingServiceUnavailable(Exception):
    """The pricing service (PRICING_API_URL) did not answer in time, could not be reached, or failed:
    no price, so no order. The shop's edge answers 503 (code pricing_unavailable), Retry-After."""

    code = "pricing_unavailable"

    def __init__(self, reason: str, *, retry_after_seconds: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_seconds = retry_after_seconds
        self.message = "Prices cannot be calculated right now; nothing was stored. Please try again shortly."
