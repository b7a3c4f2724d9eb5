"""manage.py credentials customer|staff|api-key: one credential of each kind the monolith's APIs take."""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from legacy.mes.exceptions import ApiKeyNameTaken
from legacy.mes.services import api_key_issue
from legacy.shop.services import customer_credential_ensure
from ops.staff_credentials import staff_token_ensure

# How each credential is presented, printed to stderr beside the value (stdout holds the value only).
USAGE = {
    "customer": "Authorization: Bearer {value}   (/shop/api/orders/)",
    "staff": "Authorization: Token {value}   (/crm/api/)",
    "api-key": "X-API-Key: {value}   (/mes/api/)",
}


class Command(BaseCommand):
    help = (
        "Issue a credential for the monolith's APIs and print it on stdout, alone on one line, so "
        "that `TOKEN=$(manage.py credentials ...)` captures it; how to present it goes to stderr. "
        "`customer --email E [--name N]`: the customer with that email (created if new) and their "
        "token for /shop/api/orders/ (Authorization: Bearer); the same token on every run. "
        "`staff --name USERNAME [--email E]`: a staff user (created with no password; "
        "`manage.py changepassword` gives an admin login) and their token for /crm/api/ "
        "(Authorization: Token); the same token on every run. "
        "`api-key --name NAME`: a new key for the external MES API /mes/api/ (X-API-Key). Only its "
        "hash is stored, so it is printed this once; an existing NAME is refused. "
        "--rotate replaces the credential of that customer, user or key name: the old one stops working."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        kinds = parser.add_subparsers(dest="kind", required=True, metavar="customer|staff|api-key")
        customer = kinds.add_parser("customer", help="a customer's token for the shop's order API")
        customer.add_argument("--email", required=True, help="the customer's email (their identity)")
        customer.add_argument(
            "--name", default="", help="the name of a new customer (default: from the email)"
        )
        staff = kinds.add_parser("staff", help="a staff user's token for the CRM's staff API")
        staff.add_argument("--name", required=True, help="the staff user's username")
        staff.add_argument("--email", default="", help="the email of a new staff user")
        api_key = kinds.add_parser("api-key", help="a key for the external MES API")
        api_key.add_argument("--name", required=True, help="who holds the key, e.g. the partner's name")
        for kind in (customer, staff, api_key):
            kind.add_argument(
                "--rotate",
                action="store_true",
                help="replace the existing credential (the old one stops working)",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.SERVICE != "legacy":
            raise CommandError(
                f"These are credentials of the legacy monolith: run the command with SERVICE=legacy "
                f"(this process has SERVICE={settings.SERVICE})."
            )
        kind = options["kind"]
        if kind == "customer":
            value, note = self._customer(options)
        elif kind == "staff":
            value, note = self._staff(options)
        else:
            value, note = self._api_key(options)
        self.stdout.write(value)
        # stderr, so that the value is all a caller capturing stdout gets.
        self.stderr.write(f"{note}\nuse as  {USAGE[kind].format(value=value)}", style_func=str)

    def _customer(self, options: dict[str, Any]) -> tuple[str, str]:
        email = options["email"].strip()
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"--email {email!r} is not an email address.") from exc
        name = options["name"].strip() or email.split("@")[0]
        customer, created = customer_credential_ensure(email=email, name=name, rotate=options["rotate"])
        state = (
            "new customer" if created else ("token replaced" if options["rotate"] else "existing customer")
        )
        return customer.api_token, f"customer {customer.email} (id {customer.id}, {state})"

    def _staff(self, options: dict[str, Any]) -> tuple[str, str]:
        username = options["name"].strip()
        if not username:
            raise CommandError("--name must name the staff user.")
        credential = staff_token_ensure(username=username, email=options["email"], rotate=options["rotate"])
        if credential.created:
            state = "new staff user, no password: `manage.py changepassword` for the admin"
        elif credential.promoted:
            state = "existing user, now staff and active"
        else:
            state = "token replaced" if options["rotate"] else "existing staff user"
        return credential.token, f"staff user {credential.username} ({state})"

    def _api_key(self, options: dict[str, Any]) -> tuple[str, str]:
        name = options["name"].strip()
        if not name:
            raise CommandError("--name must say who holds the key.")
        try:
            issued = api_key_issue(name=name, replace=options["rotate"])
        except ApiKeyNameTaken as exc:
            raise CommandError(
                f"{exc.message} Its key cannot be shown again (only its hash is stored): choose "
                "another --name, or add --rotate to replace it."
            ) from exc
        return issued.raw, f"MES API key {issued.name!r}: shown this once, only its hash is stored"
