"""manage.py production_stages: move due production orders one stage on until SIGTERM."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from mes_production.stage_runner import stage_runner_run


class Command(BaseCommand):
    help = (
        "Advance production orders one stage every MES_STAGE_SECONDS (queued -> cutting -> assembly "
        "-> quality_check -> done) until SIGTERM or Ctrl-C, writing production.order.stage_changed "
        "(and .completed) to the outbox with each step. The state is in the production database: a "
        "killed runner carries on when started again, and several runners never advance one order twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stage-seconds",
            type=float,
            default=settings.MES_STAGE_SECONDS,
            help="time each stage takes (default: MES_STAGE_SECONDS, %(default)s)",
        )
        parser.add_argument(
            "--poll-seconds",
            type=float,
            default=settings.PRODUCTION_STAGES_POLL_SECONDS,
            help="longest sleep between rounds (default: PRODUCTION_STAGES_POLL_SECONDS, %(default)s)",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.PRODUCTION_STAGES_BATCH_SIZE,
            help="orders advanced per transaction (default: %(default)s)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.METRICS_PORT:
            from prometheus_client import start_http_server

            start_http_server(settings.METRICS_PORT)
        # A long-running process: its lines are JSON logs (the runner logs how many stages it moved
        # when it stops), nothing on stdout.
        stage_runner_run(
            stage_seconds=options["stage_seconds"],
            poll_seconds=options["poll_seconds"],
            batch_size=options["batch_size"],
        )
