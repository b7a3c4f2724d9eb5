"""`manage.py seed` and `manage.py traffic` against the real database and the running monolith."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from legacy.crm.models import Note
from legacy.mes.models import STAGE_SEQUENCE, ApiKey, ProductionOrder
from legacy.mes.services import quote_calculate
from legacy.shop.models import Customer, Order, OrderLine, OrderStatus, OrderStatusChange, Product
from legacy.traffic.credentials import API_KEY_PREFIX, STAFF_USERNAME
from ops.process_group import free_port, manage_command
from tests.integration.orders_in_flight import orders_in_flight_wait

pytestmark = pytest.mark.integration

SMALL = {"products": 12, "customers": 40, "orders": 400}
EVERY_ROUTE = {
    "GET /shop/",
    "GET /shop/api/products/",
    "GET /shop/api/products/{sku}/",
    "GET /shop/api/orders/",
    "GET /shop/api/orders/{id}/",
    "POST /shop/api/orders/",
    "GET /crm/api/orders/",
    "POST /crm/api/orders/{id}/confirm/",
    "POST /mes/api/quotes/",
    "GET /mes/api/production-orders/",
    "GET /mes/api/production-orders/{id}/",
}
# The history each status implies, in order.
HISTORIES = {
    "placed": ["placed"],
    "cancelled": ["placed", "cancelled"],
    "confirmed": ["placed", "confirmed"],
    "in_production": ["placed", "confirmed", "in_production"],
    "done": ["placed", "confirmed", "in_production", "done"],
}


def seed(**options: object) -> str:
    out = io.StringIO()
    call_command("seed", stdout=out, **{**SMALL, **options})
    return out.getvalue()


def traffic(*args: str) -> tuple[dict, CommandError | None]:
    """Runs the command with --json; returns its summary and the CommandError it raised, if any."""
    out = io.StringIO()
    error = None
    try:
        call_command("traffic", *args, "--json", stdout=out)
    except CommandError as exc:
        error = exc
    return json.loads(out.getvalue().strip().splitlines()[-1]), error


@pytest.mark.django_db
def test_seed_builds_orders_whose_totals_history_and_production_agree() -> None:
    seed()

    orders = list(Order.objects.annotate(line_sum=Sum("lines__line_total"), line_count=Count("lines")))
    assert len(orders) == 400
    assert Customer.objects.count() == 40 and Product.objects.count() == 12
    assert all(order.line_count >= 1 and order.total == order.line_sum for order in orders)
    assert set(Counter(order.status for order in orders)) >= {"placed", "cancelled", "in_production", "done"}

    history: dict[int, list[str]] = {}
    for order_id, status in OrderStatusChange.objects.order_by("order_id", "at", "id").values_list(
        "order_id", "status"
    ):
        history.setdefault(order_id, []).append(status)
    productions = {p.order_id: p for p in ProductionOrder.objects.prefetch_related("stages")}
    for order in orders:
        assert history[order.id] == HISTORIES[order.status], order.id
        if order.status in (OrderStatus.IN_PRODUCTION, OrderStatus.DONE):
            production = productions[order.id]
            assert order.sent_to_mes_at is not None
            assert production.status == order.production_stage
            assert production.order_public_id == order.public_id
            stages = [stage.status for stage in production.stages.all()]
            assert stages == [s.value for s in STAGE_SEQUENCE[: len(stages)]]
            assert stages[-1] == production.status
        else:
            assert order.id not in productions and order.sent_to_mes_at is None
    assert Note.objects.exists()


@pytest.mark.django_db
def test_seeded_lines_carry_the_price_the_mes_quotes_today() -> None:
    seed(orders=100)
    lines = OrderLine.objects.select_related("product").prefetch_related(
        "product__materials__material", "product__options__extra_material"
    )[:60]
    for line in lines:
        quote = quote_calculate(product=line.product, option_codes=line.options, quantity=line.quantity)
        assert (line.unit_price, line.line_total) == (quote.unit_price, quote.total)


@pytest.mark.django_db
def test_seed_refuses_a_database_with_data_unless_reset() -> None:
    seed(orders=50)
    before = Order.objects.count()

    with pytest.raises(CommandError, match="--reset"):
        seed(orders=80)
    assert Order.objects.count() == before

    plan = seed(orders=80, reset=True, dry_run=True)
    assert "would delete" in plan and "shop_order 50" in plan
    assert Order.objects.count() == before

    output = seed(orders=80, reset=True, yes=True)
    assert "deleted:" in output
    assert Order.objects.count() == 80
    assert Customer.objects.count() == SMALL["customers"]


@pytest.mark.django_db(transaction=True)
def test_traffic_against_the_running_monolith_sees_no_error_on_any_route(
    legacy_stack, legacy_polling
) -> None:  # type: ignore[no-untyped-def]
    seed()
    placed_before = Order.objects.filter(status=OrderStatus.PLACED).count()

    summary, error = traffic(
        "--base-url", legacy_stack.base_url,
        "--rate", "60", "--duration", "4",
        "--mix", "customer=6,staff=2,external=2",
        "--random-seed", "7",
    )  # fmt: skip

    assert error is None, summary["error_samples"]
    assert summary["ok"] and summary["errors"] == 0
    assert summary["requests"] == 240
    assert set(summary["routes"]) == EVERY_ROUTE
    assert all(route["count"] > 0 and route["p50_ms"] > 0 for route in summary["routes"].values())
    assert summary["by_role"]["customer"]["errors"] == 0
    placed = summary["routes"]["POST /shop/api/orders/"]["count"]
    assert Order.objects.count() == SMALL["orders"] + placed
    confirmed = OrderStatusChange.objects.filter(actor=STAFF_USERNAME, status=OrderStatus.CONFIRMED).count()
    assert confirmed == summary["routes"]["POST /crm/api/orders/{id}/confirm/"]["count"]
    assert Order.objects.filter(status=OrderStatus.PLACED).count() == placed_before + placed - confirmed
    # The run's MES API keys do not outlive it.
    assert not ApiKey.objects.filter(name__startswith=API_KEY_PREFIX).exists()
    # Every order the staff confirmed goes through production; waiting for it also keeps the
    # worker from writing into the next test's database after this one is flushed.
    orders_in_flight_wait()


@pytest.mark.django_db
def test_traffic_fails_when_nothing_listens_at_the_target() -> None:
    seed(orders=20)
    summary, error = traffic(
        "--base-url", f"http://127.0.0.1:{free_port()}", "--rate", "20", "--duration", "1"
    )
    assert error is not None and "20 of 20 requests failed" in str(error)
    assert not summary["ok"]
    assert sum(route["error_kinds"].get("connection", 0) for route in summary["routes"].values()) == 20


class AlwaysFails(BaseHTTPRequestHandler):
    def _fail(self) -> None:
        body = b'{"error": {"code": "server_error", "message": "boom"}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _fail

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), AlwaysFails)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=True)
def test_traffic_exits_non_zero_when_the_target_answers_500(failing_server: str, live_env: dict) -> None:
    seed(orders=20)
    result = subprocess.run(
        manage_command("traffic", "--base-url", failing_server, "--rate", "30", "--duration", "1", "--json"),
        env={**os.environ, **live_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["errors"] == summary["requests"] == 30
    assert {kind for route in summary["routes"].values() for kind in route["error_kinds"]} == {"5xx"}
    assert "requests failed unexpectedly" in result.stderr
