"""`manage.py migrate_data STEP`: the data-migration toolkit (docs/data-migration.md)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from migrations.slices import SliceRefused
from migrations.steps import StepRefused

STEPS = ("plan", "backfill", "sync", "verify", "status", "cutover", "rollback", "retire")


class Command(BaseCommand):
    help = (
        "Move a slice's tables from the legacy database to its service's database: plan, backfill, "
        "sync, verify, status, cutover (canary -> live under a bounded write freeze), rollback, retire. "
        "Steps that change anything have --dry-run. See docs/data-migration.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")
        for step in STEPS:
            if importlib.util.find_spec(f"migrations.steps.{step}") is None:
                continue
            module = importlib.import_module(f"migrations.steps.{step}")
            step_parser = sub.add_parser(
                step, help=module.HELP, description=module.DESCRIPTION, formatter_class=parser.formatter_class
            )
            module.add_arguments(step_parser)

    def handle(self, *args: Any, **options: Any) -> None:
        module = importlib.import_module(f"migrations.steps.{options['step']}")
        try:
            module.run(options, self.stdout)
        except (SliceRefused, StepRefused) as exc:
            raise CommandError(str(exc)) from exc
