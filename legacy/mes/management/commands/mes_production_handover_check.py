"""manage.py mes_production_handover_check: may the production slice be cut over now?

Run by the operator after the monolith's Celery workers were restarted with MES_PRODUCTION=service
and before `migrate_data cutover --slice production` (docs/data-migration.md, hand-over of the
production slice). A legacy MES task that still runs after the cutover's marker writes rows the
forward sync carries into mes_production's tables after mes_production took them over; a worker
still in legacy mode keeps starting and advancing production orders. This asks every worker that
answers a ping which mode it runs and what it is running, and lists the orders the hand-over would
leave without production.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from legacy.mes.models import ProductionOrder, ProductionStage
from legacy.shop.models import Order, OrderStatus

LEGACY_MES_TASKS = ("legacy.mes.tasks.start_production", "legacy.mes.tasks.advance_production")


class Command(BaseCommand):
    help = (
        "Check that no Celery worker still runs the legacy MES (each answers in MES_PRODUCTION=service "
        "mode and runs no legacy MES task) and that no confirmed order would be left without "
        "production: a confirmed order with no legacy production order must have been confirmed "
        "after --declared-at (when `consume production --declare-only` ran), so that its "
        "shop.order.confirmed waits in mes_production's queue. Exit 1 when either fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--declared-at",
            required=True,
            help="ISO time of `consume production --declare-only` (mes_production's queues declared)",
        )
        parser.add_argument(
            "--allow-placed-before",
            action="store_true",
            help="do not fail on orders placed before the declare and not confirmed yet (they are listed)",
        )
        parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for the workers")

    def handle(self, *args: Any, **options: Any) -> None:
        declared_at = datetime.fromisoformat(options["declared_at"])
        if timezone.is_naive(declared_at):
            raise CommandError("--declared-at needs a time zone (e.g. 2026-12-01T01:00:00+00:00)")
        problems = self._workers(options["timeout"])
        problems += self._orders(declared_at, options["allow_placed_before"])
        last = ProductionStage.objects.aggregate(last=Max("at"))["last"]
        if last is not None:
            ago = (timezone.now() - last).total_seconds()
            self.stdout.write(f"last legacy MES stage written at {last.isoformat()} ({ago:.1f} s ago)")
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError("the production slice must not be cut over yet")
        self.stdout.write(
            "OK: no worker runs the legacy MES; each confirmed order has production or its event waits"
        )

    def _workers(self, timeout: float) -> list[str]:
        from config.celery import app

        # A ping waits the whole timeout (any number of workers may answer); the two questions
        # after it end as soon as every worker that answered the ping has answered them.
        pinged = {name for reply in app.control.ping(timeout=timeout) or [] for name in reply}
        if not pinged:
            self.stdout.write("no Celery worker answered (none running)")
            return []
        modes: dict[str, str] = {}
        replies = app.control.broadcast("mes_production_mode", reply=True, timeout=timeout, limit=len(pinged))
        for reply in replies or []:
            for name, answer in reply.items():
                mode = answer.get("mes_production") if isinstance(answer, dict) else None
                if mode:
                    modes[name] = str(mode)
        active = app.control.inspect(timeout=timeout, limit=len(pinged)).active() or {}
        problems = []
        for name in sorted(pinged | set(modes)):
            mode = modes.get(name, "unknown (no answer: a worker started before this check existed)")
            running = [task["name"] for task in active.get(name, []) if task.get("name") in LEGACY_MES_TASKS]
            self.stdout.write(f"worker {name}: MES_PRODUCTION={mode}, legacy MES tasks {len(running)}")
            if mode != "service":
                problems.append(f"worker {name} runs MES_PRODUCTION={mode}: restart it in service mode")
            elif running:
                problems.append(f"worker {name} still runs {running}: wait until they end")
        return problems

    def _orders(self, declared_at: datetime, allow_placed_before: bool) -> list[str]:
        without_production = Order.objects.filter(status=OrderStatus.CONFIRMED).exclude(
            Exists(ProductionOrder.objects.filter(order_id=OuterRef("id")))
        )
        lost = [
            order.id
            for order in without_production.prefetch_related("history")
            if not any(h.status == OrderStatus.CONFIRMED and h.at >= declared_at for h in order.history.all())
        ]
        placed_before = Order.objects.filter(status=OrderStatus.PLACED, created_at__lt=declared_at).count()
        self.stdout.write(
            f"confirmed orders without a legacy production order: {without_production.count()}, "
            f"of them confirmed before the declare: {len(lost)}; orders placed before the declare and "
            f"not confirmed yet: {placed_before}"
        )
        problems = []
        if lost:
            problems.append(
                f"orders {lost[:20]} were confirmed before mes_production's queue existed and have no "
                "legacy production order: start the legacy workers in legacy mode again until they have one"
            )
        if placed_before and not allow_placed_before:
            problems.append(
                f"{placed_before} orders were placed before mes_production's queue existed: mes_production "
                "has no projection of them and could not start their production once confirmed "
                "(--allow-placed-before to go on knowingly)"
            )
        return problems
