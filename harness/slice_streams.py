"""Streams of a slice dropped at the end of a test or benchmark: a slot left behind retains WAL."""

from __future__ import annotations

from cdc.replication import capture_teardown
from migrations.slices import Slice


def slice_streams_drop(slice_: Slice) -> None:
    """Drops both streams' slots and publications."""
    for direction in ("reverse", "forward"):
        capture_teardown(slice_.stream_target(direction), dry_run=False)
