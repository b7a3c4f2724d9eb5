"""Staff users of a process's own database and their API tokens ("Authorization: Token <token>",
DRF's authtoken): the CRM's staff (`manage.py credentials staff`) and the proxy's
(`manage.py strangler staff`) are issued the same way, each in its own process's database."""

from dataclasses import dataclass

import structlog
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StaffCredential:
    username: str
    token: str  # "Authorization: Token <token>" on the staff API of the process that issued it
    created: bool  # the user is new
    promoted: bool  # the user existed without staff rights (or inactive) and has them now


@transaction.atomic
def staff_token_ensure(*, username: str, email: str = "", rotate: bool = False) -> StaffCredential:
    """A staff user (created with no password if new) and their API token, the same on every call;
    `rotate` replaces the token (the old one stops working)."""
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"email": email, "is_staff": True, "is_active": True}
    )
    promoted = not created and not (user.is_staff and user.is_active)
    if created:
        # Staff reach the API with the token; `manage.py changepassword` gives an admin login.
        user.set_unusable_password()
        user.save(update_fields=["password"])
    elif promoted:
        user.is_staff = user.is_active = True
        user.save(update_fields=["is_staff", "is_active"])
    if rotate:
        Token.objects.filter(user=user).delete()
    token = Token.objects.get_or_create(user=user)[0].key
    logger.info(
        "staff.credential_issued", username=username, created=created, promoted=promoted, rotated=rotate
    )
    return StaffCredential(username=username, token=token, created=created, promoted=promoted)
