"""The deprecated external read of production orders, through real processes: the monolith's web,
mes_pricing's web and its projection consumer (`manage.py consume pricing-production-orders`), and
the proxy, loaded with the repository's own migration plan.

Production events (contract-valid, on the real broker) feed the projection; once the plan's
`production-orders-deprecated` slice is live the proxy sends /mes/api/production-orders/ to
mes_pricing, which answers exactly what the monolith answered for the same rows, plus the
Deprecation, Sunset and Link headers; past the sunset the proxy answers 410 itself; the production
service's routes are refused to outside callers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.management import call_command

import mes_pricing.production_orders.consumers  # noqa: F401 (registers the group this process declares queues for)
from cdc.event_schemas import events_validated
from harness.consumer_topology import group_topology_declare
from harness.proxy_plan import plan_slice, plan_text
from harness.system_tools import tool_ensure
from harness.waiting import wait_http_ok, wait_until
from legacy.mes.models import ProductionOrder, ProductionStage
from mes_pricing.models import ApiKey as PricingApiKey
from mes_pricing.models import hash_api_key
from mes_pricing.production_orders.models import ProjectedProductionOrder, ProjectedProductionStage
from ops.process_group import ManagedProcess, ProcessGroup, free_port, service_process_commands
from strangler import services
from strangler.models import Phase
from strangler.plan import plan_load_file, plan_parse
from tests.consumer_fixtures import LOG_DIR, PARTITIONS
from tests.event_transport import amqp_publish, cloud_event
from tests.factories import api_key
from tests.integration.proxy_stack import INTERNAL_TOKEN, backend_start, proxy_caught_up, proxy_start

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control", "pricing"], transaction=True),
]

GROUP = "pricing-production-orders"
CONSUMER = {"SERVICE": "mes_pricing", "CONSUMER_MODULES": "mes_pricing.production_orders.consumers"}
RAW_KEY = "test-key-deprecation-partner"
DEPRECATED_AT = "2026-11-01T00:00:00Z"
SUNSET = "2027-06-01T00:00:00Z"
LINK = "https://docs.example.com/mes/production-orders-deprecation"
DEPRECATED_SLICE = "production-orders-deprecated"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
STAGES = ["queued", "cutting", "assembly", "quality_check", "done"]


@dataclass
class World:
    proxy_url: str
    pricing_url: str
    legacy_url: str
    production_url: str


def _legacy_rows(order_id: int, stages_reached: int) -> ProductionOrder:
    """A production order in the monolith's tables, with fixed times (the events say the same)."""
    production = ProductionOrder.objects.create(
        order_id=order_id,
        order_public_id=uuid.uuid4(),
        status=STAGES[stages_reached - 1],
        lines=[{"sku": f"SKU-{order_id}", "quantity": 2, "options": ["oak"]}],
    )
    for index in range(stages_reached):
        ProductionStage.objects.create(
            production_order=production, status=STAGES[index], at=T0 + timedelta(minutes=index)
        )
    ProductionOrder.objects.filter(id=production.id).update(
        created_at=T0, updated_at=T0 + timedelta(minutes=stages_reached - 1)
    )
    production.refresh_from_db()
    return production


def _events(production: ProductionOrder) -> list[dict[str, Any]]:
    """What mes_production publishes for the order (contracts/events/production/*)."""
    subject = f"production_order:{production.id}"
    source = "/production/production_outbox"
    events = [
        cloud_event(
            "production.order.started.v1",
            subject,
            {
                "production_order_id": production.id,
                "order_id": production.order_id,
                "order_public_id": str(production.order_public_id),
                "stage": "queued",
                "lines": production.lines,
                "at": T0.isoformat(),
            },
            source=source,
        )
    ]
    stages = list(production.stages.order_by("at"))
    for previous, stage in zip(stages, stages[1:], strict=False):
        events.append(
            cloud_event(
                "production.order.stage_changed.v1",
                subject,
                {
                    "production_order_id": production.id,
                    "order_id": production.order_id,
                    "stage": stage.status,
                    "previous_stage": previous.status,
                    "at": stage.at.isoformat(),
                },
                source=source,
            )
        )
        if stage.status == "done":
            events.append(
                cloud_event(
                    "production.order.completed.v1",
                    subject,
                    {
                        "production_order_id": production.id,
                        "order_id": production.order_id,
                        "at": stage.at.isoformat(),
                    },
                    source=source,
                )
            )
    return list(events_validated(events))


def _plan_load(world: World, *, sunset: str) -> None:
    """The repository's plan, its backends and the sunset from the environment as an operator's."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEGACY_URL", world.legacy_url)
        env.setenv("MES_PRICING_URL", world.pricing_url)
        for name in ("SHOP_URL", "CRM_URL", "MES_PRODUCTION_URL"):
            env.setenv(name, world.production_url)
        env.setenv("MES_PRODUCTION_ORDERS_SUNSET", sunset)
        plan = plan_load_file(settings.STRANGLER_PLAN_FILE)
    services.plan_apply(plan=plan, who="test")
    proxy_caught_up(world.proxy_url)


def _to_live(world: World, name: str) -> None:
    from strangler.models import Slice

    while Slice.objects.using("control").get(name=name).phase != "live":
        services.slice_promote(name=name, who="test", force=True, why="test setup")
    proxy_caught_up(world.proxy_url)


@pytest.fixture(scope="module")
def processes(live_env: dict[str, str], legacy_stack: Any) -> Iterator[tuple[ProcessGroup, World]]:
    env = {
        **live_env,
        "MES_PRODUCTION_ORDERS_DEPRECATED_AT": DEPRECATED_AT,
        "MES_PRODUCTION_ORDERS_SUNSET": SUNSET,
        "MES_PRODUCTION_ORDERS_DEPRECATION_LINK": LINK,
    }
    with ProcessGroup() as group:
        port = free_port()
        web = group.start(
            ManagedProcess(
                "pricing-web",
                service_process_commands("mes_pricing", port=port)["web"],
                {**env, "SERVICE": "mes_pricing"},
                LOG_DIR / f"deprecation-pricing-web-{port}.log",
            )
        )
        pricing_url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{pricing_url}/healthz", seconds=30, process=web.popen)
        _, production_url = backend_start(group, "production")
        _, proxy_url = proxy_start(group, env, "deprecation")
        yield group, World(proxy_url, pricing_url, legacy_stack.base_url, production_url)


@pytest.fixture
def world(processes: tuple[ProcessGroup, World], consumer_vhost: str, start_consumer: Any) -> Iterator[World]:
    """The plan loaded (every slice in legacy), a partner's key on both sides, the consumer running."""
    _, world = processes
    _plan_load(world, sunset=SUNSET)  # the control database is flushed after each test: all legacy
    api_key(name="deprecation-partner", raw=RAW_KEY)
    PricingApiKey.objects.using("pricing").get_or_create(
        name="deprecation-partner", defaults={"prefix": RAW_KEY[:8], "key_hash": hash_api_key(RAW_KEY)}
    )
    group_topology_declare(consumer_vhost, GROUP, partitions=PARTITIONS)
    world.consumer = start_consumer(GROUP, env=CONSUMER)  # type: ignore[attr-defined]
    world.broker = consumer_vhost  # type: ignore[attr-defined]
    yield world


def _get(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers={"X-API-Key": RAW_KEY, **headers}, timeout=10)


def test_deprecated_reads_keep_the_legacy_contract_and_carry_the_three_headers(world: World) -> None:
    done, cutting = _legacy_rows(900_001, 5), _legacy_rows(900_002, 2)
    events = _events(done) + _events(cutting)
    amqp_publish(world.broker, events)  # type: ignore[attr-defined]
    wait_until(
        lambda: world.consumer.metric("consumer_events_consumed_total", outcome="handled") == len(events),  # type: ignore[attr-defined]
        seconds=30,
        what="the projection consumed every production event",
    )
    paths = [
        f"/mes/api/production-orders/?order_id={done.order_id}",
        f"/mes/api/production-orders/?order_id={cutting.order_id}&limit=1",
        f"/mes/api/production-orders/{done.id}/",
        f"/mes/api/production-orders/{cutting.id}/",
        "/mes/api/production-orders/987654321/",  # 404
        "/mes/api/production-orders/?order_id=abc",  # 400
        "/mes/api/production-orders/?order_id=99999999999999999999999",
    ]
    # The slice in legacy: the monolith answers through the proxy, with no deprecation headers.
    legacy = {path: _get(world.proxy_url + path) for path in paths}
    assert [r.status_code for r in legacy.values()] == [200, 200, 200, 200, 404, 400, 200]
    assert "deprecation" not in legacy[paths[0]].headers
    assert legacy[paths[0]].json()["results"][0]["status"] == "done"
    legacy_no_key = requests.get(f"{world.proxy_url}{paths[2]}", timeout=10)

    _to_live(world, "production")
    _to_live(world, DEPRECATED_SLICE)
    for path in paths:
        new = _get(world.proxy_url + path)
        assert (new.status_code, new.json()) == (legacy[path].status_code, legacy[path].json()), path
        assert new.headers["content-type"] == legacy[path].headers["content-type"]
        assert new.headers["Deprecation"] == f"@{int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())}", path
        assert new.headers["Sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"
        assert new.headers["Link"] == f'<{LINK}>; rel="deprecation"'
    # A request without a key is refused as the monolith refused it, and told of the deprecation.
    no_key = requests.get(f"{world.proxy_url}{paths[2]}", timeout=10)
    assert (no_key.status_code, no_key.json()) == (legacy_no_key.status_code, legacy_no_key.json())
    assert no_key.status_code == 401 and no_key.headers["Sunset"] == "Tue, 01 Jun 2027 00:00:00 GMT"


def test_the_projection_follows_events_once_whatever_their_order_and_repeats(world: World) -> None:
    production = _legacy_rows(900_003, 5)
    events = _events(production)
    # Reversed, then all again: the stages wait for the started event, the copies change nothing.
    amqp_publish(world.broker, list(reversed(events)) + events)  # type: ignore[attr-defined]
    consumer = world.consumer  # type: ignore[attr-defined]
    wait_until(
        lambda: (
            consumer.metric("consumer_events_consumed_total", outcome="handled") == len(events)
            and consumer.metric("consumer_events_consumed_total", outcome="duplicate") == len(events)
        ),
        seconds=30,
        what="every event handled once and its copy recognised",
    )
    order = ProjectedProductionOrder.objects.using("pricing").get(id=production.id)
    assert (order.order_id, order.status, order.created_at, order.updated_at) == (
        production.order_id,
        "done",
        production.created_at,
        production.updated_at,
    )
    stages = ProjectedProductionStage.objects.using("pricing").filter(production_order_id=production.id)
    assert [(s.status, s.at) for s in stages] == [(s.status, s.at) for s in production.stages.all()]
    # A republish (new event ids, same facts) is absorbed by the writes themselves.
    amqp_publish(world.broker, _events(production))  # type: ignore[attr-defined]
    wait_until(
        lambda: consumer.metric("consumer_events_consumed_total", outcome="handled") == 2 * len(events),
        seconds=30,
        what="the republished events handled",
    )
    assert (
        ProjectedProductionStage.objects.using("pricing").filter(production_order_id=production.id).count()
        == 5
    )
    assert consumer.metric("consumer_events_dead_lettered_total") == 0
    # An event off its contract (a stage production does not have) is dead-lettered (after the
    # consumer's retries), not guessed at.
    bad = cloud_event(
        "production.order.stage_changed.v1",
        f"production_order:{production.id}",
        {
            "production_order_id": production.id,
            "order_id": production.order_id,
            "stage": "painting",
            "previous_stage": "assembly",
            "at": T0.isoformat(),
        },
    )
    amqp_publish(world.broker, [bad])  # type: ignore[attr-defined]
    wait_until(
        lambda: consumer.metric("consumer_events_dead_lettered_total") == 1,
        seconds=30,
        what="the off-contract event dead-lettered",
    )
    stages = ProjectedProductionStage.objects.using("pricing").filter(production_order_id=production.id)
    assert sorted(stages.values_list("status", flat=True)) == sorted(STAGES)


def test_past_its_sunset_the_proxy_answers_410_in_the_json_error_shape(world: World) -> None:
    _to_live(world, "production")
    _to_live(world, DEPRECATED_SLICE)
    assert _get(f"{world.proxy_url}/mes/api/production-orders/").status_code == 200
    _plan_load(world, sunset="2026-01-01T00:00:00Z")
    for path in (
        "/mes/api/production-orders/",
        "/mes/api/production-orders/1/",
        "/mes/api/production-orders/?x=1",
    ):
        gone = _get(world.proxy_url + path)
        assert gone.status_code == 410, path
        assert gone.headers["content-type"] == "application/json"
        assert gone.headers["Sunset"] == "Thu, 01 Jan 2026 00:00:00 GMT"
        assert gone.json() == {
            "error": {
                "code": "gone",
                "message": f"{path.split('?')[0]} was retired on Thu, 01 Jan 2026 00:00:00 GMT.",
                "details": {"sunset": "Thu, 01 Jan 2026 00:00:00 GMT"},
            }
        }
    # Whatever the phase: a rolled-back slice is past its sunset too.
    services.slice_rollback(name=DEPRECATED_SLICE, who="test", why="test", to_phase=Phase.LEGACY)
    proxy_caught_up(world.proxy_url)
    assert _get(f"{world.proxy_url}/mes/api/production-orders/").status_code == 410
    # Other routes are untouched.
    assert requests.get(f"{world.proxy_url}/healthz", timeout=5).status_code == 200


def test_the_production_service_is_refused_to_outside_callers(world: World) -> None:
    for phase_step in ("legacy", "live"):
        if phase_step == "live":
            _to_live(world, "production")
        for path in ("/production/", "/production/orders/1/", "/production/healthz"):
            outside = requests.get(world.proxy_url + path, timeout=5)
            assert outside.status_code == 403, (phase_step, path)
            assert outside.json()["error"]["code"] == "internal_route"
    # An insider (the internal token) reaches the production backend.
    inside = requests.get(
        f"{world.proxy_url}/production/orders/1/",
        headers={"X-Strangler-Internal-Token": INTERNAL_TOKEN},
        timeout=5,
    )
    assert inside.status_code == 200 and inside.headers["x-backend-name"] == "production"


def test_nginx_exported_past_the_sunset_answers_410_like_the_proxy(world: World, tmp_path: Path) -> None:
    # The shipped plan has a regex route nginx cannot export (catalogue-page); this one has the
    # deprecated route as the shipped plan declares it.
    route = {
        "name": "production-orders",
        "prefix": "/mes/api/production-orders/",
        "sunset": "2026-01-01T00:00:00Z",
    }
    text = plan_text(
        backends={"legacy": world.legacy_url, "mes_pricing": world.pricing_url},
        slices={DEPRECATED_SLICE: plan_slice(service="mes_pricing", routes=[route])},
    )
    services.plan_apply(plan=plan_parse(text), who="test")
    port = free_port()
    config = tmp_path / "nginx.conf"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / sub).mkdir(parents=True)
    call_command(
        "strangler",
        "export-nginx",
        "--listen",
        f"127.0.0.1:{port}",
        "--output",
        str(config),
        stdout=StringIO(),
    )
    binary = tool_ensure("nginx", package="nginx")
    with ProcessGroup() as group:
        nginx = group.start(
            ManagedProcess(
                "nginx",
                [binary, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"],
                {},
                LOG_DIR / f"deprecation-nginx-{port}.log",
            )
        )
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", seconds=15, process=nginx.popen)
        gone = _get(f"http://127.0.0.1:{port}/mes/api/production-orders/?order_id=1")
        assert gone.status_code == 410
        assert gone.headers["content-type"] == "application/json"
        assert gone.headers["Sunset"] == "Thu, 01 Jan 2026 00:00:00 GMT"
        assert gone.json()["error"]["code"] == "gone"
        assert gone.json()["error"]["details"] == {"sunset": "Thu, 01 Jan 2026 00:00:00 GMT"}
        # The rest of the plan is still proxied.
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["service"] == "legacy"
