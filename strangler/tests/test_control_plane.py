"""Control plane: plan validation, operator actions with gates, dry runs and audit, commands, staff API."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from strangler import services
from strangler.models import AuditEntry, ControlSettings, Route, ShadowRouteStats, Slice
from strangler.plan import PlanError, plan_load_file, plan_parse

pytestmark = pytest.mark.django_db(databases=["default", "control"])

PLAN = """
version: 1
default_backend: legacy
backends:
  legacy: {urls: ["http://127.0.0.1:8001"]}
  shop: {urls: ["http://127.0.0.1:8002", "http://127.0.0.1:8003"], health_path: /healthz}
slices:
  catalogue:
    service: shop
    tables: [shop_product]
    routes:
      - {name: products, prefix: /shop/api/products/, methods: [GET, HEAD]}
    shadow:
      sample_rate: 0.5
      compare_headers: [content-type]
      ignore: {/shop/api/products/: ["results.*.id"]}
    gates: {min_shadow_requests: 10, max_shadow_diff_rate: 0.1, max_sync_lag_seconds: 2}
"""


def load(text: str = PLAN) -> services.PlanChange:
    return services.plan_apply(plan=plan_parse(text), who="test")


def test_invalid_plan_names_every_bad_field_by_path() -> None:
    bad = PLAN.replace("service: shop", "service: shoop").replace("[GET, HEAD]", "[GET, FETCH]")
    bad = bad.replace("sample_rate: 0.5", "sample_rate: 2")
    with pytest.raises(PlanError) as caught:
        plan_parse(bad)
    problems = caught.value.problems
    assert "plan.slices.catalogue.service: 'shoop' is not a backend declared under 'backends'" in problems
    assert any(
        p.startswith("plan.slices.catalogue.routes[0].methods[1]: 'FETCH' is not one of") for p in problems
    )
    assert "plan.slices.catalogue.shadow.sample_rate: 2 must be between 0 and 1" in problems


def test_a_route_is_read_only_only_when_the_plan_says_true() -> None:
    marked = PLAN.replace("[GET, HEAD]", "[GET, HEAD], read_only: true", 1)
    assert [r.read_only for s in plan_parse(marked).slices for r in s.routes][0] is True
    assert not any(r.read_only for s in plan_parse(PLAN).slices for r in s.routes)
    with pytest.raises(PlanError) as caught:
        plan_parse(PLAN.replace("[GET, HEAD]", "[GET, HEAD], read_only: 'yes'", 1))
    assert "plan.slices.catalogue.routes[0].read_only: 'yes' must be true or false" in caught.value.problems


def test_plan_rejects_unknown_fields_bad_urls_and_overlapping_routes() -> None:
    bad = PLAN.replace("http://127.0.0.1:8001", "ftp://x").replace("tables:", "tabels:")
    bad += (
        "  catalogue2:\n    service: shop\n    routes:\n"
        "      - {name: p, prefix: /shop/api/products/, methods: [GET]}\n"
    )
    with pytest.raises(PlanError) as caught:
        plan_parse(bad)
    text = str(caught.value)
    assert "plan.backends.legacy.urls[0]: 'ftp://x' must be http://host:port" in text
    assert "plan.slices.catalogue.tabels: unknown field" in text
    assert "plan.slices.catalogue2.routes[0]: GET /shop/api/products/ is already routed by" in text


def test_plan_load_creates_slices_and_keeps_phase_on_reload() -> None:
    change = load()
    assert change.audit_id is not None
    slice_ = Slice.objects.using("control").get(name="catalogue")
    assert slice_.phase == "legacy" and slice_.shadow_sample_rate == 0.5
    assert slice_.new_backend.base_urls == ["http://127.0.0.1:8002", "http://127.0.0.1:8003"]
    services.slice_promote(name="catalogue", who="test")
    load()
    assert Slice.objects.using("control").get(name="catalogue").phase == "syncing"
    assert Route.objects.using("control").filter(slice__name="catalogue").count() == 1


def test_gates_block_promotion_until_figures_pass_and_force_is_audited() -> None:
    load()
    services.slice_promote(name="catalogue", who="op")  # legacy -> syncing: plan validated
    with pytest.raises(services.OperationRefused, match="sync_lag_seconds=None"):
        services.slice_promote(name="catalogue", who="op")
    services.slice_report_sync(name="catalogue", lag_seconds=0.4, verified_at=timezone.now())
    services.slice_promote(name="catalogue", who="op")  # syncing -> shadow
    assert Slice.objects.using("control").get(name="catalogue").shadow_enabled
    ShadowRouteStats.objects.using("control").create(
        slice_name="catalogue", route_name="products", compared=5
    )
    with pytest.raises(services.OperationRefused, match="compared=5"):
        services.slice_promote(name="catalogue", who="op")
    with pytest.raises(services.OperationRefused, match="needs a reason"):
        services.slice_promote(name="catalogue", who="op", force=True)
    change = services.slice_promote(name="catalogue", who="op", force=True, why="incident drill")
    assert change.to_state["phase"] == "canary" and change.gate["forced"] is True
    assert change.audit_id is not None
    entry = AuditEntry.objects.using("control").get(id=change.audit_id)
    assert entry.why == "incident drill" and entry.from_state["phase"] == "shadow"


def _to_canary() -> None:
    load()
    for _ in range(3):
        services.slice_promote(name="catalogue", who="op", force=True, why="test setup")


def test_weight_dry_run_changes_nothing_and_real_run_bumps_version() -> None:
    _to_canary()
    version = ControlSettings.objects.using("control").get(id=1).version
    audits = AuditEntry.objects.using("control").count()
    dry = services.slice_set_weight(name="catalogue", weight=Decimal("10"), who="op", dry_run=True)
    assert dry.to_state["canary_weight"] == "10.00" and dry.audit_id is None
    assert Slice.objects.using("control").get(name="catalogue").canary_weight == 0
    assert ControlSettings.objects.using("control").get(id=1).version == version
    assert AuditEntry.objects.using("control").count() == audits
    services.slice_set_weight(name="catalogue", weight=Decimal("10"), who="op")
    assert ControlSettings.objects.using("control").get(id=1).version > version


def test_pause_blocks_raising_weight_but_not_rollback() -> None:
    _to_canary()
    services.slice_set_weight(name="catalogue", weight=Decimal("5"), who="op")
    services.slice_set_paused(name="catalogue", paused=True, who="op")
    with pytest.raises(services.OperationRefused, match="paused"):
        services.slice_set_weight(name="catalogue", weight=Decimal("20"), who="op")
    change = services.slice_rollback(name="catalogue", who="op", why="bad p99")
    assert change.to_state == {**change.to_state, "phase": "shadow", "canary_weight": "0.00"}


def test_weight_refused_outside_canary() -> None:
    load()
    with pytest.raises(services.OperationRefused, match="promote it to canary"):
        services.slice_set_weight(name="catalogue", weight=Decimal("10"), who="op")


def test_commands_print_changes_and_refuse_with_actionable_message(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(PLAN)
    out = StringIO()
    call_command("strangler", "load-plan", str(plan_file), "--dry-run", stdout=out)
    assert out.getvalue().startswith("DRY RUN, nothing changed")
    assert not Slice.objects.using("control").exists()
    call_command("strangler", "load-plan", str(plan_file), "--why", "first plan", stdout=out)
    out = StringIO()
    call_command("strangler", "slices", stdout=out)
    assert "catalogue" in out.getvalue() and "legacy" in out.getvalue()
    with pytest.raises(CommandError, match="promote it to canary"):
        call_command("strangler", "weight", "catalogue", "10")
    bad = tmp_path / "bad.yaml"
    bad.write_text(PLAN.replace("prefix: /shop", "prefix: shop"))
    with pytest.raises(CommandError, match=r"plan.slices.catalogue.routes\[0\].prefix: 'shop/api/products/'"):
        call_command("strangler", "validate-plan", str(bad))
    out = StringIO()
    call_command("strangler", "audit", stdout=out)
    assert "plan.load" in out.getvalue() and "first plan" in out.getvalue()


def test_the_monolith_plan_configured_for_load_plan_is_valid_and_exposes_what_is_public_today(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for i, name in enumerate(["LEGACY_URL", "SHOP_URL", "CRM_URL", "MES_PRICING_URL", "MES_PRODUCTION_URL"]):
        monkeypatch.setenv(name, f"http://127.0.0.1:{9000 + i}")
    plan = plan_load_file(settings.STRANGLER_PLAN_FILE)
    assert [s.name for s in plan.slices] == [
        "catalogue",
        "shop-orders",
        "crm-orders",
        "pricing",
        "production",
        "production-orders-deprecated",
    ]
    # External MES users read production orders through the proxy today (README): the route stays
    # public until its sunset, served by the public side; the production service's own are internal.
    routes = {r.name: r for s in plan.slices for r in s.routes}
    assert routes["production-orders"].exposure == "public"
    assert routes["production-orders"].sunset is not None
    assert routes["production-internal"].exposure == "internal"
    assert {s.name: s.service for s in plan.slices}["production-orders-deprecated"] == "mes_pricing"
    assert plan.default_exposure == "public"
    assert {b.name: b.urls for b in plan.backends}["shop"] == ["http://127.0.0.1:9001"]
    # With nothing set (a newcomer's first load-plan), each backend has its documented local default.
    for name in ["LEGACY_URL", "SHOP_URL", "CRM_URL", "MES_PRICING_URL", "MES_PRODUCTION_URL"]:
        monkeypatch.delenv(name)
    defaults = {b.name: b.urls for b in plan_load_file(settings.STRANGLER_PLAN_FILE).backends}
    assert defaults["legacy"] == ["http://127.0.0.1:8000"] and defaults["shop"] == ["http://127.0.0.1:8001"]


def test_a_plan_url_names_an_environment_variable_with_or_without_a_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (
        "version: 1\ndefault_backend: legacy\nbackends:\n"
        "  legacy: {urls: ['${PLAN_TEST_LEGACY:-http://127.0.0.1:7001}']}\n"
        "  new: {urls: ['${PLAN_TEST_NEW}']}\nslices: {}\n"
    )
    monkeypatch.delenv("PLAN_TEST_LEGACY", raising=False)
    monkeypatch.delenv("PLAN_TEST_NEW", raising=False)
    with pytest.raises(PlanError, match=r"plan.backends.new.urls\[0\]: refers to \$\{PLAN_TEST_NEW\}"):
        plan_parse(text)
    monkeypatch.setenv("PLAN_TEST_NEW", "http://127.0.0.1:7002")
    urls = {b.name: b.urls for b in plan_parse(text).backends}
    assert urls == {"legacy": ["http://127.0.0.1:7001"], "new": ["http://127.0.0.1:7002"]}
    monkeypatch.setenv("PLAN_TEST_LEGACY", "http://127.0.0.1:7003")
    assert {b.name: b.urls for b in plan_parse(text).backends}["legacy"] == ["http://127.0.0.1:7003"]


def test_backends_say_unknown_until_a_proxy_reports_and_then_since_when() -> None:
    load()
    out = StringIO()
    call_command("strangler", "backends", stdout=out)
    assert "unknown (no proxy has reported it yet)" in out.getvalue()
    services.backend_health_record(name="legacy", healthy=False)
    out = StringIO()
    call_command("strangler", "backends", stdout=out)
    legacy_line = next(line for line in out.getvalue().splitlines() if line.startswith("legacy "))
    assert "DOWN since " in legacy_line


def test_entering_shadow_starts_a_new_comparison_window() -> None:
    """Comparisons of an earlier shadow period (an earlier run, a rollback) do not count for the gate."""
    load()
    services.slice_promote(name="catalogue", who="op")  # legacy -> syncing
    ShadowRouteStats.objects.using("control").create(
        slice_name="catalogue", route_name="products", compared=900, differing=300
    )
    services.slice_report_sync(name="catalogue", lag_seconds=0.1, verified_at=timezone.now())
    services.slice_promote(name="catalogue", who="op")  # syncing -> shadow
    assert not ShadowRouteStats.objects.using("control").filter(slice_name="catalogue").exists()


SUNSET_PLAN = """
version: 1
default_backend: legacy
backends:
  legacy: {urls: ["http://127.0.0.1:8001"]}
  new: {urls: ["http://127.0.0.1:8002"]}
slices:
  old-api:
    service: new
    routes:
      - {name: old, prefix: /old/, sunset: "${PLAN_TEST_SUNSET:-Tue, 01 Jun 2027 00:00:00 GMT}"}
      - {name: kept, prefix: /kept/}
"""


def test_a_route_sunset_is_an_http_date_or_iso_moment_from_the_environment_and_reaches_the_routing_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    from strangler.proxy.routing import RoutingTable
    from strangler.selectors import routing_snapshot

    monkeypatch.delenv("PLAN_TEST_SUNSET", raising=False)
    routes = {r.name: r for r in plan_parse(SUNSET_PLAN).slices[0].routes}
    assert routes["old"].sunset == datetime(2027, 6, 1, tzinfo=UTC)
    assert routes["kept"].sunset is None
    monkeypatch.setenv("PLAN_TEST_SUNSET", "2026-03-01T12:00:00+01:00")
    assert plan_parse(SUNSET_PLAN).slices[0].routes[0].sunset == datetime(2026, 3, 1, 11, tzinfo=UTC)
    services.plan_apply(plan=plan_parse(SUNSET_PLAN), who="test")
    table = RoutingTable(routing_snapshot())
    assert table.match("GET", "/old/1/").sunset == datetime(2026, 3, 1, 11, tzinfo=UTC).timestamp()
    assert table.match("GET", "/kept/").sunset is None
    assert Route.objects.using("control").get(name="old").sunset == datetime(2026, 3, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2027-06-01", "has no time zone"),
        ("next summer", "is neither an HTTP-date nor an ISO 8601 date-time"),
        ("2027-13-01T00:00:00Z", "is neither an HTTP-date nor an ISO 8601 date-time"),
    ],
)
def test_a_bad_sunset_is_refused_with_its_path(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("PLAN_TEST_SUNSET", value)
    with pytest.raises(PlanError, match=rf"plan.slices.old-api.routes\[0\].sunset: .*{problem}"):
        plan_parse(SUNSET_PLAN)


def test_an_empty_sunset_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    text = SUNSET_PLAN.replace("${PLAN_TEST_SUNSET:-Tue, 01 Jun 2027 00:00:00 GMT}", "${PLAN_TEST_SUNSET:-}")
    monkeypatch.delenv("PLAN_TEST_SUNSET", raising=False)
    assert plan_parse(text).slices[0].routes[0].sunset is None
