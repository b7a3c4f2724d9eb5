"""What the shop refuses when another service asks for a staff decision, as typed errors."""

from ops.errors import ApplicationError, ApplicationNotFound


class OrderNotFound(ApplicationNotFound):
    def __init__(self, *, order_id: int) -> None:
        super().__init__(f"Order {order_id} does not exist.")


class InvalidTransition(ApplicationError):
    """The order's status does not allow the decision."""

    code = "invalid_transition"
