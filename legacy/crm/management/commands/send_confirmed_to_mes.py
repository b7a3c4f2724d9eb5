"""manage.py send_confirmed_to_mes: one sweep of the polling orchestrator, for the switch to events."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from legacy.crm.orchestrator import confirmed_orders_dispatch_all, confirmed_orders_waiting


class Command(BaseCommand):
    help = (
        "Send every confirmed order that has not gone to the MES yet, once, whatever "
        "ORCHESTRATION_MODE says, and exit. It is the hand-over to events mode: an order confirmed "
        "before the CDC slot existed never gets a shop.order.confirmed event, so run this after "
        "`manage.py cdc setup` and the last sweep sends what the poller left. An order whose event "
        "is handled at the same moment is still sent once. --dry-run only counts them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count the waiting orders, send nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.MES_PRODUCTION == "service":
            raise CommandError(
                "MES_PRODUCTION=service: mes_production takes confirmed orders from shop.order.confirmed "
                "events and the legacy MES takes none; there is nothing to send."
            )
        if options["dry_run"]:
            self.stdout.write(f"{confirmed_orders_waiting()} confirmed orders wait to be sent to the MES")
            return
        from legacy.mes.tasks import start_production

        sent = confirmed_orders_dispatch_all(
            batch_size=settings.CRM_POLL_BATCH_SIZE,
            at=timezone.now(),
            send=lambda request: start_production.apply_async(kwargs=request),
        )
        self.stdout.write(f"sent {sent} confirmed orders to the MES")
