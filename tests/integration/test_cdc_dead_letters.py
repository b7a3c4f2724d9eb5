"""A change the translation cannot read does not stop the stream: the real engine stores it as a
dead letter (raw change, reason, position), counts and logs it, and publishes the good changes
after it; `manage.py cdc dead-letters` lists, shows and replays it once the translation is fixed
(here: a capture registered through CDC_CAPTURES that knows the new status)."""

from __future__ import annotations

import json

import pytest
import requests
from django.db import connection
from django.utils import timezone

from cdc.models import CaptureDeadLetter
from harness.waiting import wait_until
from legacy.shop.services import OrderLineRequest, order_place
from tests.cdc_fixed_capture import ON_HOLD
from tests.cdc_fixtures import PROJECT_ROOT, EventCollector, RunningEngine, cdc_child_env, run_manage
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "control"]),
]
ORDER_EVENTS = ["shop.order.created.v1", "shop.order_line.added.v1", "shop.order.placed.v1"]


def test_an_untranslatable_change_is_dead_lettered_and_the_stream_goes_on_until_replay(
    cdc_engine: RunningEngine, event_collector: EventCollector, live_env: dict[str, str], amqp_url: str
) -> None:
    PricingRuleFactory()
    customer, product = CustomerFactory(), ProductFactory()
    lines = [OrderLineRequest(sku=product.sku, quantity=1)]
    held = order_place(customer=customer, lines=lines, at=timezone.now()).id
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO shop_order_status_history (order_id, status, note, actor, at) "
            "VALUES (%s, 'on_hold', 'parked', 'staff', now())",
            [held],
        )
    after = order_place(customer=customer, lines=lines, at=timezone.now()).id

    # The stream goes on: the changes after the poison one are published.
    assert event_collector.wait_for_types(f"order:{after}", 3, seconds=40) == ORDER_EVENTS
    assert event_collector.wait_for_types(f"order:{held}", 3) == ORDER_EVENTS
    letter = wait_until(
        lambda: CaptureDeadLetter.objects.filter(capture="legacy").first(), seconds=20, what="a dead letter"
    )
    assert letter.reason == "untranslatable"
    assert letter.error_type == "cdc.row_changes.UntranslatableChange" and "'on_hold'" in letter.error
    assert letter.engine == "legacy" and letter.position.startswith("lsn=")
    envelope = json.loads(letter.record["value"])
    assert envelope["after"]["status"] == "on_hold" and envelope["after"]["order_id"] == held
    assert letter.replayed_at is None

    def scrape() -> str | None:
        body = requests.get(f"http://127.0.0.1:{cdc_engine.metrics_port}/metrics", timeout=5).text
        return (
            body if 'cdc_dead_letters_total{capture="legacy",reason="untranslatable"} 1.0' in body else None
        )

    wait_until(scrape, seconds=20, interval=0.5, what="the dead-letter metric")
    logged = [
        json.loads(line)
        for line in cdc_engine.cdc.process.log_tail(400).splitlines()
        if "cdc.dead_lettered" in line
    ]
    assert logged and logged[0]["level"] == "error" and logged[0]["reason"] == "untranslatable"
    assert logged[0]["error_type"] == "UntranslatableChange"

    env = cdc_child_env(live_env, cdc_engine.config, CDC_AMQP_URL=amqp_url)
    listed = run_manage(env, "cdc", "dead-letters", "list")
    assert listed.returncode == 0, listed.stderr
    assert (
        f"{letter.id}  " in listed.stdout and "untranslatable" in listed.stdout and "pending" in listed.stdout
    )
    status = run_manage(env, "cdc", "status")
    assert "dead letters pending: 1 (`manage.py cdc dead-letters list`)" in status.stdout, status.stderr
    shown = run_manage(env, "cdc", "dead-letters", "show", str(letter.id))
    assert shown.returncode == 0, shown.stderr
    assert "reason: untranslatable" in shown.stdout and "on_hold" in shown.stdout

    # Replayed with today's code, it still fails and stays as it is.
    unfixed = run_manage(env, "cdc", "dead-letters", "replay", str(letter.id))
    assert unfixed.returncode != 0 and "still fails" in unfixed.stderr
    letter.refresh_from_db()
    assert letter.replayed_at is None

    fixed = {
        **env,
        "CDC_CAPTURES": "legacy=tests.cdc_fixed_capture:capture",
        "CDC_EXTRA_SCHEMA_DIRS": str(PROJECT_ROOT / "tests" / "schemas"),
    }
    dry = run_manage(fixed, "cdc", "dead-letters", "replay", str(letter.id), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would publish {ON_HOLD} order:{held}" in dry.stdout
    letter.refresh_from_db()
    assert letter.replayed_at is None

    replayed = run_manage(fixed, "cdc", "dead-letters", "replay", str(letter.id))
    assert replayed.returncode == 0, replayed.stderr
    assert f"published {ON_HOLD} order:{held}" in replayed.stdout
    assert event_collector.wait_for_types(f"order:{held}", 4) == [*ORDER_EVENTS, ON_HOLD]
    [event] = event_collector.events(lambda e: e["type"] == ON_HOLD)
    assert event["data"] == {"order_id": held, "note": "parked"}
    letter.refresh_from_db()
    assert letter.replayed_at is not None and letter.replay_count == 1
    assert letter.replayed_event_ids == [event["id"]]

    again = run_manage(fixed, "cdc", "dead-letters", "replay", "--all")
    assert again.returncode == 0, again.stderr
    assert "no dead letters to replay" in again.stdout
    assert "dead letters pending: 0" in run_manage(env, "cdc", "status").stdout
    assert cdc_engine.cdc.alive()
