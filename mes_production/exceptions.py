"""What the production service refuses, in sentences a person can act on."""


class ShopOrderUnknown(Exception):
    """A shop order was confirmed whose shop.order.created.v1 never reached this service."""

    def __init__(self, *, order_id: int) -> None:
        super().__init__(
            f"order {order_id} was confirmed but its shop.order.created event never arrived here: "
            "the production consumer group's queues were declared after the order was placed"
        )
        self.order_id = order_id
