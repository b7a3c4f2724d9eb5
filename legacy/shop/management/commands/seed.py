"""manage.py seed: fill the legacy database with a realistic data set (see legacy/seeding.py)."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from legacy.seeding import DatabaseNotEmpty, SeedSize, legacy_data_seed, seeded_table_counts


class Command(BaseCommand):
    help = (
        "Fill the legacy database with a realistic data set: a catalogue of configurable products "
        "(materials, options), an active pricing rule with quantity discounts, customers, orders in "
        "every status (placed, confirmed, cancelled, in_production, done) priced by the MES's own "
        "pricing code with a consistent status history, MES production orders with their stages, "
        "and CRM notes. The defaults suit a demo; --orders 100000 took 14-20 s on 2 cores. A database "
        "that already holds shop, CRM or MES rows is refused unless --reset (which deletes them; users "
        "and API keys stay). The seed creates no credentials: `manage.py traffic` makes its own."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = SeedSize()
        parser.add_argument("--products", type=int, default=defaults.products, help="catalogue size")
        parser.add_argument("--customers", type=int, default=defaults.customers, help="customers")
        parser.add_argument("--orders", type=int, default=defaults.orders, help="orders")
        parser.add_argument(
            "--days", type=int, default=defaults.days, help="orders spread over this many past days"
        )
        parser.add_argument(
            "--notes-percent",
            type=int,
            default=defaults.notes_percent,
            help="share of orders with a CRM note",
        )
        parser.add_argument("--random-seed", type=int, default=42, help="same seed, same data set")
        parser.add_argument(
            "--reset", action="store_true", help="delete the existing shop, CRM and MES rows first"
        )
        parser.add_argument("--yes", action="store_true", help="do not ask before --reset deletes rows")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would be deleted and created, change nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        size = SeedSize(
            products=options["products"],
            customers=options["customers"],
            orders=options["orders"],
            days=options["days"],
            notes_percent=options["notes_percent"],
        )
        try:
            size.validate()
        except ValueError as exc:
            raise CommandError(f"Invalid size: {exc}.") from exc
        counts = seeded_table_counts()
        filled = {table: count for table, count in counts.items() if count}
        if options["dry_run"]:
            self._show_plan(size, filled, reset=options["reset"])
            return
        if filled and not options["reset"]:
            raise CommandError(
                f"The legacy database already holds data ({self._describe(filled)}). "
                "Run again with --reset to delete it first (see --dry-run), or point DB_NAME_PREFIX "
                "at an empty database."
            )
        if filled and not options["yes"] and not self._confirmed(filled):
            raise CommandError("Nothing changed: the reset was not confirmed.")

        started = time.perf_counter()
        console = Console(stderr=True)
        with Progress(
            TextColumn("seeding orders"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress:
            task = progress.add_task("orders", total=size.orders)
            try:
                result = legacy_data_seed(
                    size=size,
                    now=timezone.now(),
                    random_seed=options["random_seed"],
                    reset=options["reset"],
                    on_progress=lambda done, _total: progress.update(task, completed=done),
                )
            except DatabaseNotEmpty as exc:  # rows arrived between the check and the seed
                raise CommandError(f"{exc}; run again with --reset.") from exc
        elapsed = time.perf_counter() - started
        if filled:
            self.stdout.write(f"deleted: {self._describe(filled)}")
        self.stdout.write(f"created: {self._describe(result.rows)}")
        self.stdout.write(
            "orders by status: " + ", ".join(f"{s}={n}" for s, n in sorted(result.statuses.items()))
        )
        self.stdout.write(self.style.SUCCESS(f"seeded in {elapsed:.1f} s"))

    @staticmethod
    def _describe(counts: dict[str, int]) -> str:
        return ", ".join(f"{table} {count}" for table, count in counts.items())

    def _show_plan(self, size: SeedSize, filled: dict[str, int], *, reset: bool) -> None:
        if filled and not reset:
            self.stdout.write(
                f"would refuse: the database holds {self._describe(filled)}; add --reset to delete it"
            )
            return
        if filled:
            self.stdout.write(f"would delete: {self._describe(filled)}")
        self.stdout.write(
            f"would create: {size.products} products, {size.customers} customers, {size.orders} orders "
            f"over {size.days} days, notes on {size.notes_percent}% of orders"
        )

    def _confirmed(self, filled: dict[str, int]) -> bool:
        self.stdout.write(f"--reset will delete: {self._describe(filled)}")
        try:
            answer = input("Type 'yes' to delete these rows and seed again: ")
        except EOFError:
            self.stdout.write("")
            return False
        return answer.strip().lower() == "yes"
