"""Tables of the pricing service, on the pricing database."""
