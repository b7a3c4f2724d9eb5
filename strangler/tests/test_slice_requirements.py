"""A slice's `requires:` in the plan: validated (known slices, no self, no cycle), stored on the
slice, and part of the canary -> live gate."""

from __future__ import annotations

from decimal import Decimal

import pytest

from strangler import services
from strangler.models import Slice
from strangler.plan import PlanError, plan_parse
from strangler.services import OperationRefused

PLAN = """
version: 1
default_backend: legacy
backends:
  legacy: {urls: ["http://127.0.0.1:8001"]}
  shop: {urls: ["http://127.0.0.1:8002"]}
  crm: {urls: ["http://127.0.0.1:8003"]}
slices:
  orders:
    service: shop
    routes: [{name: orders, prefix: /shop/api/orders/}]
  notes:
    service: crm
    requires: [orders]
    routes: [{name: notes, prefix: /crm/api/notes/}]
"""


def test_plan_keeps_the_slices_a_slice_requires() -> None:
    plan = plan_parse(PLAN)
    assert {s.name: s.requires for s in plan.slices} == {"orders": [], "notes": ["orders"]}


def test_plan_refuses_unknown_self_and_circular_requirements() -> None:
    with pytest.raises(PlanError) as unknown:
        plan_parse(PLAN.replace("requires: [orders]", "requires: [order]"))
    assert unknown.value.problems == ["plan.slices.notes.requires[0]: 'order' is not a slice of this plan"]
    with pytest.raises(PlanError) as itself:
        plan_parse(PLAN.replace("requires: [orders]", "requires: [notes]"))
    assert itself.value.problems == ["plan.slices.notes.requires[0]: a slice cannot require itself"]
    circular = PLAN.replace("    service: shop\n", "    service: shop\n    requires: [notes]\n", 1)
    with pytest.raises(PlanError) as cycle:
        plan_parse(circular)
    assert cycle.value.problems == [
        "plan.slices.orders.requires: requirements form a cycle: orders -> notes -> orders"
    ]
    with pytest.raises(PlanError) as shape:
        plan_parse(PLAN.replace("requires: [orders]", "requires: orders"))
    assert shape.value.problems == ["plan.slices.notes.requires: must be a list of slice names"]


@pytest.mark.django_db(databases=["default", "control"])
def test_canary_to_live_gate_waits_for_the_required_slices_to_be_live() -> None:
    services.plan_apply(plan=plan_parse(PLAN), who="test")
    assert Slice.objects.using("control").get(name="notes").requires == ["orders"]
    for name in ("orders", "notes"):
        for _ in range(3):
            services.slice_promote(name=name, who="test", force=True, why="setup")
        services.slice_set_weight(name=name, weight=Decimal(100), who="test")
    with pytest.raises(OperationRefused, match="requires_not_live=\\{'orders': 'canary'\\}"):
        services.slice_promote(name="notes", who="test")
    services.slice_promote(name="orders", who="test")
    change = services.slice_promote(name="notes", who="test")
    assert change.to_state["phase"] == "live"
    assert change.gate["requires"] == ["orders"] and change.gate["requires_not_live"] == {}
