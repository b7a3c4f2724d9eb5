"""What the pricing service refuses, as typed errors (the API edge answers them, see ops.errors)."""

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


class CostDataIncomplete(PricingRefused):
    """The catalogue projection lacks a row the price needs (a bill-of-materials line or an option
    names a material whose event has not arrived): no price rather than a wrong one."""

    code = "pricing_unavailable"

    def __init__(self, *, sku: str, material_ids: list[int]) -> None:
        super().__init__(
            f"The cost data of product {sku} is incomplete; try again shortly.",
            details={"missing_materials": material_ids},
        )
