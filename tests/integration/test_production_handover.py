"""The production slice's hand-over (docs/data-migration.md, "Hand-over of the production slice")
through real processes, under a steady stream of orders placed and confirmed through the monolith's
APIs: the monolith runs production (MES_PRODUCTION=legacy, the CRM's poller and the MES's Celery
round trip), the `production` slice is backfilled, synced and verified, then the operator's switch:
the monolith's worker and scheduler restarted in service mode, `mes_production_handover_check`,
`migrate_data cutover --slice production`, mes_production's stage runner, consumer and relay
started (its queue declared at the start, so every confirmation meanwhile waits there) and the
stage runner killed with SIGKILL right after. Orders are confirmed before, during and after the
switch; at the end each has exactly one production order, one stage row per stage, is done, and
the shop order's history has one row per status; legacy's copy (reverse sync) agrees.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, Max, Min
from django.utils import timezone

import legacy.crm.consumers  # noqa: F401 (registers the group whose queues this test declares)
import mes_production.consumers  # noqa: F401 (the same for the production service's group)
from harness.waiting import wait_until
from legacy.mes.models import ProductionOrder as LegacyProductionOrder
from legacy.mes.models import ProductionStage as LegacyProductionStage
from legacy.shop.models import Order, OrderStatus
from mes_production.models import ProductionOrder, ProductionStage
from mes_production.processes import CONSUMER_GROUP
from ops.process_group import (
    PROJECT_ROOT,
    ManagedProcess,
    ProcessGroup,
    manage_command,
    service_process_commands,
)
from tests.cdc_fixtures import (
    CdcProcess,
    EventCollector,
    mes_production_outbox_relay,
)
from tests.conftest import start_legacy_stack
from tests.consumer_fixtures import LOG_DIR, EngineOrderEvents, StartConsumer
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token
from tests.integration.proxy_stack import proxy_caught_up, proxy_start
from tests.integration.test_events_end_to_end import Actors
from tests.integration.test_production_service import PRODUCTION_ENV, STAGES, ProductionApi, ProductionService

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases="__all__"),
]

SLICE = "production"
STATUS_GROUP = "legacy-production-status"
STAGE_SECONDS = 1.0
ORDER_PAUSE = 0.3  # seconds between two orders of the stream
FULL_HISTORY = ["placed", "confirmed", "in_production", "done"]
LEGACY_MODE = {
    "ORCHESTRATION_MODE": "polling",
    "MES_PRODUCTION": "legacy",
    "MES_STAGE_SECONDS": str(STAGE_SECONDS),
}
SERVICE_MODE = {**LEGACY_MODE, "MES_PRODUCTION": "service"}


@pytest.fixture
def handover_outbox_relay(
    django_db_setup: None,
    django_db_blocker: Any,
    live_env: dict[str, str],
    amqp_url: str,
    event_collector: EventCollector,
    worker_id: str,
) -> Iterator[CdcProcess]:
    """mes_production's outbox relay on a slot of this test's own, publishing to the session's vhost."""
    with (
        django_db_blocker.unblock(),
        mes_production_outbox_relay(live_env, amqp_url=amqp_url, worker_id=worker_id, tag="hovobx") as relay,
    ):
        yield relay


class OrderStream(threading.Thread):
    """Places and confirms one order after another through the monolith's APIs until stopped; keeps
    when each was confirmed."""

    def __init__(self, api: ProductionApi) -> None:
        super().__init__(name="order-stream", daemon=True)
        self.api = api
        self.confirmed: list[tuple[int, datetime]] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        n = 0
        try:
            while not self._stop_event.is_set():
                order_id = self.api.place_and_confirm(quantity=1 + n % 3)
                self.confirmed.append((order_id, timezone.now()))
                n += 1
                self._stop_event.wait(ORDER_PAUSE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            connection.close()

    def finish(self) -> list[int]:
        self._stop_event.set()
        self.join(60)
        assert not self.is_alive(), "the order stream did not stop"
        assert self.error is None, self.error
        return [order_id for order_id, _ in self.confirmed]


class Operator:
    """`manage.py` commands as the operator runs them, on the test databases."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.printed: list[str] = []

    def run(
        self, *args: str, service: str | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        env = {name: value for name, value in {**os.environ, **self.env}.items() if name != "SERVICE"}
        if service:
            env["SERVICE"] = service
        elif "SERVICE" in os.environ:
            env["SERVICE"] = "migrations"
        done = subprocess.run(
            manage_command(*args), cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        self.printed.append(f"$ manage.py {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}")
        return done


def slice_to_canary_at_100(proxy_url: str) -> None:
    """The real plan loaded into the control database and the production slice taken to canary at
    weight 100, as `strangler` commands do; the proxy routes with it."""
    from django.conf import settings

    from strangler import selectors, services
    from strangler.plan import plan_load_file

    services.plan_apply(plan=plan_load_file(settings.STRANGLER_PLAN_FILE), who="test")
    for _ in range(3):  # legacy -> syncing -> shadow -> canary
        services.slice_promote(name=SLICE, who="test", force=True, why="hand-over test")
    services.slice_set_weight(name=SLICE, weight=Decimal(100), who="test")
    proxy_caught_up(proxy_url)
    wait_until(lambda: selectors.proxies_seen(seen_seconds=3), seconds=10, what="the proxy's heartbeat")


def slice_state_forget() -> None:
    """Slots and toolkit state of the slice: server-wide slots and tables Django does not flush."""
    from django.db import connections

    from harness.slice_streams import slice_streams_drop
    from migrations.slices import slice_get

    slice_ = slice_get(SLICE)
    slice_streams_drop(slice_)
    for alias in (slice_.source_alias, slice_.target_alias):
        with connections[alias].cursor() as cursor:
            for table, column, value in (
                ("migration_sync_position", "stream", f"{SLICE}:%"),
                ("migration_backfill_checkpoint", "slice_name", SLICE),
                ("migration_reverify_key", "slice_name", SLICE),
                ("migration_marker", "slice_name", SLICE),
            ):
                cursor.execute("SELECT to_regclass(%s)", [table])
                if cursor.fetchone()[0] is not None:
                    cursor.execute(f"DELETE FROM {table} WHERE {column} LIKE %s", [value])
            cursor.execute("SELECT to_regclass('migration_stray_write')")
            if cursor.fetchone()[0] is not None:
                cursor.execute(
                    "DELETE FROM migration_stray_write WHERE table_name IN "
                    "('mes_production_order', 'mes_production_stage')"
                )


def forward_stream_running(sync: ManagedProcess) -> None:
    """A marker written at legacy arrives in the production database: the sync applies."""
    from migrations.cutover import marker_arrived, marker_write
    from migrations.slices import slice_get

    slice_ = slice_get(SLICE)
    token = marker_write(slice_, "forward")
    wait_until(
        lambda: marker_arrived(slice_, "forward", token),
        seconds=120,
        interval=0.2,
        what="the forward stream running",
        process=sync,
    )


def legacy_stop(processes: dict[str, ManagedProcess]) -> datetime:
    """Stops the monolith's scheduler and worker (SIGTERM: the task in hand finishes; tasks it held
    come back to the queue)."""
    for name in ("beat", "worker"):
        processes[name].stop(timeout=60)
    return timezone.now()


def legacy_start(group: ProcessGroup, processes: dict[str, ManagedProcess], env: dict[str, str]) -> None:
    """Starts the monolith's worker and scheduler again with `env`."""
    commands = service_process_commands("legacy", port=0)
    for name in ("worker", "beat"):
        log = LOG_DIR / f"handover-legacy-{name}-service-{os.getpid()}.log"
        processes[name] = group.start(ManagedProcess(name, commands[name], env, log))


def first_stage_after(order_ids: list[int], at: datetime) -> dict[int, datetime]:
    return dict(
        ProductionStage.objects.filter(production_order__order_id__in=order_ids, at__gt=at)
        .values("production_order__order_id")
        .annotate(first=Min("at"))
        .values_list("production_order__order_id", "first")
    )


def test_orders_in_flight_continue_in_mes_production_none_lost_none_duplicated(
    live_env: dict[str, str],
    consumer_env: dict[str, str],
    amqp_url: str,
    cdc_engine: Any,
    engine_order_events: EngineOrderEvents,
    start_consumer: StartConsumer,
    handover_outbox_relay: CdcProcess,
) -> None:
    PricingRuleFactory()
    actors = Actors(product=ProductFactory(), customer=CustomerFactory(), staff_token=staff_token())
    operator = Operator({**live_env, "LOG_LEVEL": "INFO"})
    legacy_env = {**consumer_env, **LEGACY_MODE}
    service_env = {**consumer_env, **SERVICE_MODE}
    legacy_operator = Operator({**service_env, "LOG_LEVEL": "INFO"})
    production_env = {
        **consumer_env,
        **PRODUCTION_ENV,
        "CDC_AMQP_URL": amqp_url,
        "MES_STAGE_SECONDS": str(STAGE_SECONDS),
    }

    # Step 1: mes_production's queue (and the status group's) declared before anything else, so
    # every shop.order.* event from now on waits for them.
    engine_order_events.topology_declare(CONSUMER_GROUP)
    engine_order_events.topology_declare(STATUS_GROUP)
    declared_at = timezone.now()
    slice_state_forget()
    figures: dict[str, Any] = {}
    try:
        with ProcessGroup() as group:
            legacy = start_legacy_stack(group, legacy_env, "handover-legacy", polling=True)
            _, proxy_url = proxy_start(group, live_env, "handover")
            stream = OrderStream(ProductionApi(legacy.base_url, actors))
            stream.start()
            wait_until(
                lambda: LegacyProductionOrder.objects.filter(status="done").exists(),
                seconds=90,
                what="the legacy MES finishing a first order",
                process=legacy.processes["worker"],
            )

            # Step 2: backfill, sync, verify of the production slice while legacy runs production.
            backfill = operator.run("migrate_data", "backfill", "--slice", SLICE, "--restart")
            assert backfill.returncode == 0, operator.printed[-1]
            sync = group.start(
                ManagedProcess(
                    "migrate-sync",
                    manage_command("migrate_data", "sync", "--slice", SLICE),
                    {**operator.env, "SERVICE": "migrations"},
                    LOG_DIR / f"handover-sync-{os.getpid()}.log",
                )
            )
            slice_to_canary_at_100(proxy_url)
            forward_stream_running(sync)
            # Legacy's MES keeps writing meanwhile: a row it changed an instant ago may not be
            # across yet, and the operator verifies again (the drill-down rechecks such rows).
            for _ in range(3):
                verify = operator.run("migrate_data", "verify", "--slice", SLICE)
                if verify.returncode == 0:
                    break
            assert verify.returncode == 0, operator.printed[-1]
            assert sync.alive(), sync.log_tail()

            # The check refuses while the worker still runs the legacy MES.
            refused = legacy_operator.run(
                "mes_production_handover_check", "--declared-at", declared_at.isoformat(), service="legacy"
            )
            assert refused.returncode == 1, legacy_operator.printed[-1]
            assert "runs MES_PRODUCTION=legacy: restart it in service mode" in refused.stderr

            # Step 3: the switch.
            switch_started = timezone.now()
            steps = {"worker_stopped": legacy_stop(legacy.processes)}

            def handover_check() -> str:
                # The monolith's Celery vhost is the test's own (service_env), not the session's.
                run = legacy_operator.run(
                    "mes_production_handover_check",
                    "--declared-at",
                    declared_at.isoformat(),
                    service="legacy",
                )
                assert run.returncode == 0, legacy_operator.printed[-1]
                return run.stdout

            assert "no Celery worker answered" in handover_check()
            steps["checked"] = timezone.now()
            in_flight_ids = list(
                LegacyProductionOrder.objects.exclude(status="done").values_list("order_id", flat=True)
            )
            stage_at_switch = dict(
                LegacyProductionOrder.objects.filter(order_id__in=in_flight_ids).values_list(
                    "order_id", "status"
                )
            )
            cutover = operator.run("migrate_data", "cutover", "--slice", SLICE, "--who", "handover-test")
            assert cutover.returncode == 0, operator.printed[-1]
            cutover_done = steps["cut_over"] = timezone.now()
            # Step 4: the stage runner first (in-flight orders are due), then the consumer (the
            # confirmations queued since the declare) and the status group.
            production = ProductionService(group, production_env)
            stages = production.start("stages")
            # It dies with SIGKILL right after its first advance, and starts again.
            wait_until(
                lambda: ProductionStage.objects.filter(at__gt=cutover_done).exists(),
                seconds=60,
                interval=0.02,
                what="a first stage written by mes_production",
                process=stages,
            )
            steps["first_stage"] = timezone.now()
            stages.signal(signal.SIGKILL)
            assert stages.popen is not None and stages.popen.wait(timeout=10) == -signal.SIGKILL
            killed_at = timezone.now()
            # The monolith's worker and scheduler again, in service mode: out of the pause.
            legacy_start(group, legacy.processes, service_env)
            start_consumer(CONSUMER_GROUP, env={**PRODUCTION_ENV, **engine_order_events.consumer_env})
            start_consumer(STATUS_GROUP, env={**SERVICE_MODE, **engine_order_events.consumer_env})
            switch_done = steps["consumers_started"] = timezone.now()
            production.start("stages")

            time.sleep(8)  # orders keep coming after the switch
            order_ids = stream.finish()
            # The check now hears the restarted worker, in service mode.
            wait_until(
                lambda: "MES_PRODUCTION=service, legacy MES tasks 0" in handover_check(),
                seconds=60,
                interval=0.5,
                what="the check hearing the restarted worker",
            )

            def all_done() -> bool:
                return Order.objects.filter(id__in=order_ids, status=OrderStatus.DONE).count() == len(
                    order_ids
                )

            wait_until(all_done, seconds=180, interval=0.5, what=f"all {len(order_ids)} orders done")

            def legacy_copy_done() -> bool:
                return LegacyProductionOrder.objects.filter(
                    order_id__in=order_ids, status="done"
                ).count() == len(order_ids) and LegacyProductionStage.objects.filter(
                    production_order__order_id__in=order_ids
                ).count() == len(order_ids) * len(STAGES)

            wait_until(legacy_copy_done, seconds=60, interval=0.5, what="legacy's copy by the reverse sync")

            # Exactly one production order per confirmed order, one stage row per stage, done.
            per_order = dict(
                ProductionOrder.objects.filter(order_id__in=order_ids)
                .values("order_id")
                .annotate(n=Count("id"))
                .values_list("order_id", "n")
            )
            assert per_order == {order_id: 1 for order_id in order_ids}, "one production order per order"
            assert ProductionOrder.objects.filter(order_id__in=order_ids, status="done").count() == len(
                order_ids
            )
            for order_id in order_ids:
                stages_of = list(
                    ProductionStage.objects.filter(production_order__order_id=order_id)
                    .order_by("at", "id")
                    .values_list("status", flat=True)
                )
                assert stages_of == STAGES, (order_id, stages_of)
            # The shop order: done, one history row per status.
            histories = {
                order_id: list(Order.objects.get(id=order_id).history.values_list("status", flat=True))
                for order_id in order_ids
            }
            assert all(history == FULL_HISTORY for history in histories.values()), histories
            # Legacy's copy is the same rows.
            new_rows = set(
                ProductionOrder.objects.filter(order_id__in=order_ids).values_list("id", "order_id", "status")
            )
            old_rows = set(
                LegacyProductionOrder.objects.filter(order_id__in=order_ids).values_list(
                    "id", "order_id", "status"
                )
            )
            assert new_rows == old_rows
            assert sync.alive(), sync.log_tail()

            # Orders were confirmed before, during and after the switch, and some were in flight.
            confirmed_at = dict(stream.confirmed)
            before = [o for o in order_ids if confirmed_at[o] < switch_started]
            during = [o for o in order_ids if switch_started <= confirmed_at[o] < switch_done]
            after = [o for o in order_ids if confirmed_at[o] >= switch_done]
            assert before and during and after, (len(before), len(during), len(after))
            assert in_flight_ids, "no order was in flight at the switch"
            # Each in-flight order went on from its stage in mes_production.
            moved_on = first_stage_after(in_flight_ids, cutover_done)
            assert set(moved_on) == set(in_flight_ids)
            last_legacy = dict(
                LegacyProductionStage.objects.filter(
                    production_order__order_id__in=in_flight_ids, at__lte=switch_started
                )
                .values("production_order__order_id")
                .annotate(last=Max("at"))
                .values_list("production_order__order_id", "last")
            )
            pauses = sorted(
                (moved_on[o] - last_legacy[o]).total_seconds() - STAGE_SECONDS for o in in_flight_ids
            )
            figures = {
                "orders": len(order_ids),
                "confirmed_before_switch": len(before),
                "confirmed_during_switch": len(during),
                "confirmed_after_switch": len(after),
                "in_flight_at_switch": len(in_flight_ids),
                "in_flight_stages": sorted(stage_at_switch.values()),
                "switch_seconds": round((switch_done - switch_started).total_seconds(), 2),
                "steps_s_after_switch_start": {
                    name: round((at - switch_started).total_seconds(), 2) for name, at in steps.items()
                },
                "stage_runner_killed_s_after_cutover": round((killed_at - cutover_done).total_seconds(), 2),
                "in_flight_pause_s_min": round(pauses[0], 2),
                "in_flight_pause_s_p50": round(pauses[len(pauses) // 2], 2),
                "in_flight_pause_s_max": round(pauses[-1], 2),
            }
    finally:
        print("\n".join(operator.printed + legacy_operator.printed))
        slice_state_forget()
    print("handover:", json.dumps(figures))
