"""CRM reads over its own database."""

from django.db.models import QuerySet

from crm_app.models import Note


def order_notes(*, order_id: int) -> QuerySet[Note]:
    """The order's notes, newest first."""
    return Note.objects.filter(order_id=order_id)
