"""The proxy's measure of cutover write freezes (strangler_freeze_seconds)."""

from __future__ import annotations

import dataclasses
import time

from prometheus_client import REGISTRY

from strangler.models import Exposure, Phase
from strangler.proxy.freeze import WriteFreeze
from strangler.proxy.routing import RoutingTable
from strangler.routing_snapshot import BackendSnapshot, RoutingSnapshot, SliceSnapshot
from strangler.tests.test_proxy_units import _slice


def _table(version: int, slice_: SliceSnapshot) -> RoutingTable:
    return RoutingTable(
        RoutingSnapshot(
            version=version,
            default_backend=BackendSnapshot("legacy", ("http://127.0.0.1:1",)),
            default_exposure=Exposure.PUBLIC,
            slices=(slice_,),
        )
    )


def _count(slice_name: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "strangler_freeze_seconds_count", {"slice": slice_name, "outcome": outcome}
    )
    return value or 0.0


def test_a_freeze_ended_by_the_flip_is_observed_once_as_flipped() -> None:
    canary = _slice("freeze-flip", Phase.CANARY, [{"name": "r", "prefix": "/r/"}])
    freeze = WriteFreeze()
    freeze.install(_table(1, canary))
    freeze.install(_table(2, dataclasses.replace(canary, write_freeze_until=time.time() + 5)))
    freeze.install(_table(3, dataclasses.replace(canary, write_freeze_until=time.time() + 5)))
    assert _count("freeze-flip", "flipped") == 0
    freeze.install(_table(4, dataclasses.replace(canary, phase=Phase.LIVE)))
    assert _count("freeze-flip", "flipped") == 1
    freeze.install(_table(5, dataclasses.replace(canary, phase=Phase.LIVE)))
    assert _count("freeze-flip", "flipped") == 1 and _count("freeze-flip", "released") == 0


def test_an_expired_freeze_ends_at_its_deadline_as_released() -> None:
    canary = _slice("freeze-expired", Phase.CANARY, [{"name": "r", "prefix": "/r/"}])
    freeze = WriteFreeze()
    freeze.install(_table(1, dataclasses.replace(canary, write_freeze_until=time.time() + 0.2)))
    time.sleep(0.4)
    freeze.install(_table(2, canary))
    assert _count("freeze-expired", "released") == 1
    total = REGISTRY.get_sample_value(
        "strangler_freeze_seconds_sum", {"slice": "freeze-expired", "outcome": "released"}
    )
    assert total is not None and 0.1 < total < 0.35
