"""manage.py pricing_api_key --name NAME [--replace]: issues a key of the public pricing API."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mes_pricing.exceptions import ApiKeyNameTaken
from mes_pricing.services import api_key_issue


class Command(BaseCommand):
    help = (
        "Issue a key for the public pricing API (X-API-Key on /mes/api/quotes/ and /pricing/api/v1/) "
        "and print it on stdout, alone on one line, so that `KEY=$(manage.py pricing_api_key ...)` "
        "captures it. Only its hash is stored, so it is printed this once. An existing NAME is "
        "refused; --replace issues a new key under that name and the old one stops working."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="who holds the key, e.g. the partner's name")
        parser.add_argument(
            "--replace", action="store_true", help="replace the key of that name (the old one stops working)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters.")
        try:
            issued = api_key_issue(name=name, replace=options["replace"])
        except ApiKeyNameTaken as exc:
            raise CommandError(f"{exc.message} Use --replace to issue a new one in its place.") from exc
        self.stdout.write(issued.raw)
        self.stderr.write("shown once; use as  X-API-Key: <the key above>", style_func=str)
