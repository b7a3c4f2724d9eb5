"""What the CRM refuses, as typed errors (answered at the API edge)."""

from ops.errors import ApplicationError


class EmptyNote(ApplicationError):
    code = "empty_note"

    def __init__(self) -> None:
        super().__init__("A note needs text.")
