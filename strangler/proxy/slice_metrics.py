"""Each slice's phase and canary weight as this proxy's routing table has them, as gauges, so that
dashboards and alerts can show them next to the traffic (set when a routing table is installed).

The same moment creates each slice's (and each of its routes') event series at zero: rollbacks,
fallbacks, freezes and held writes. A series born at its first event would show no data until
then, and `increase()`/`rate()` would miss that first event (it has no earlier sample)."""

from __future__ import annotations

from prometheus_client import Gauge

from strangler.models import PHASE_ORDER
from strangler.proxy import metrics
from strangler.proxy.routing import RoutingTable

PHASE = Gauge(
    "strangler_slice_phase", "1 for the slice's current phase, 0 for the others", ["slice", "phase"]
)
CANARY_WEIGHT = Gauge(
    "strangler_slice_canary_weight_percent",
    "Percent of customers whose reads the new backend serves",
    ["slice"],
)

_published: set[str] = set()
FREEZE_OUTCOMES = ("flipped", "released")  # strangler/proxy/freeze.py


def slices_publish(table: RoutingTable) -> None:
    names = set(table.slices)
    for gone in _published - names:
        CANARY_WEIGHT.remove(gone)
        for phase in PHASE_ORDER:
            PHASE.remove(gone, phase.value)
    for name, slice_ in table.slices.items():
        for phase in PHASE_ORDER:
            PHASE.labels(name, phase.value).set(1 if slice_.phase == phase else 0)
        CANARY_WEIGHT.labels(name).set(slice_.weight)
        metrics.ROLLBACKS.labels(name)
        metrics.HELD_WRITES.labels(name)
        for outcome in FREEZE_OUTCOMES:
            metrics.FREEZE_SECONDS.labels(name, outcome)
    for route in [*table.patterns, *(r for _, routes in table.prefixes for r in routes)]:
        if route.slice is not None:
            metrics.FALLBACKS.labels(route.name)
    _published.clear()
    _published.update(names)
