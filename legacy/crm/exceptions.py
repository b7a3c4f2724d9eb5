"""What the CRM refuses on staff decisions, as typed errors (answered at the API edge)."""

from ops.errors import ApplicationError, ApplicationNotFound


class OrderNotFound(ApplicationNotFound):
    def __init__(self, *, order_id: int) -> None:
        super().__init__(f"Order {order_id} does not exist.")


class InvalidTransition(ApplicationError):
    """The order's status does not allow the decision."""

    code = "invalid_transition"


class EmptyNote(ApplicationError):
    code = "empty_note"

    def __init__(self) -> None:
        super().__init__("A note needs text.")
