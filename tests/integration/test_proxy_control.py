"""Operator commands from separate processes against the real control database."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from django.db import OperationalError, connections, transaction

from ops.process_group import manage_command
from strangler import services
from strangler.models import AuditEntry
from strangler.plan import plan_parse
from strangler.tests.test_control_plane import PLAN
from tests.integration.proxy_stack import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "control"], transaction=True),
]


def test_two_operators_at_once_are_serialised_and_both_audited(live_env: dict[str, str]) -> None:
    services.plan_apply(plan=plan_parse(PLAN), who="setup")
    for _ in range(3):
        services.slice_promote(name="catalogue", who="setup", force=True, why="to canary")
    env = {**live_env, "STRANGLER_OPERATOR": "alice"}
    first = subprocess.Popen(
        manage_command("strangler", "weight", "catalogue", "10", "--why", "step 1", "--hold-lock", "6"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(slice_row_locked, seconds=30)  # alice holds the slice row now
        locked_at = time.time()
        second = subprocess.run(
            manage_command("strangler", "weight", "catalogue", "20", "--why", "step 2"),
            env={**env, "STRANGLER_OPERATOR": "bob"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        first_out, _ = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, (first_out, second.stdout, second.stderr)
    entries = list(AuditEntry.objects.using("control").filter(action="weight").order_by("id"))
    # bob started while alice held the lock, waited for her commit and saw her weight as his "from".
    assert [(e.who, e.from_state["canary_weight"], e.to_state["canary_weight"]) for e in entries] == [
        ("alice", "0.00", "10.00"),
        ("bob", "10.00", "20.00"),
    ]
    # The row was locked during alice's hold (long before her commit), not just while she wrote.
    assert entries[0].at.timestamp() - locked_at > 2.0
    assert entries[0].at <= entries[1].at


def slice_row_locked() -> bool:
    try:
        with transaction.atomic(using="control"), connections["control"].cursor() as cursor:
            cursor.execute("SELECT 1 FROM strangler_slice WHERE name = %s FOR UPDATE NOWAIT", ["catalogue"])
        return False
    except OperationalError:
        return True


def test_invalid_plan_file_is_rejected_with_the_bad_fields_path(
    live_env: dict[str, str], tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        PLAN.replace("methods: [GET, HEAD]", "methods: [GET, YEET]").replace(
            "version: 1", "version: 1\nextra: 1"
        )
    )
    result = subprocess.run(
        manage_command("strangler", "load-plan", str(plan)),
        env=live_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "plan.slices.catalogue.routes[0].methods[1]: 'YEET' is not one of" in result.stderr
    assert "plan.extra: unknown field" in result.stderr
    assert not AuditEntry.objects.using("control").exists()
