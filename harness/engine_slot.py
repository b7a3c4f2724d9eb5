"""A CDC engine on a replication slot of its own (the demo's, a benchmark's, a test session's):
its slot, publication, offset table and topic prefix share one name, and the slot is dropped when
the run ends, because a slot left behind retains WAL on the shared server."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from cdc.engine import EngineConfig, offsets_reset
from cdc.replication import capture_setup, capture_teardown


def engine_on_slot(config: EngineConfig, *, slot: str) -> EngineConfig:
    """`config` capturing through the slot and publication `slot`, with its own offsets."""
    slot = slot.lower().replace("-", "_")  # slot names are lower-case identifiers
    target = dataclasses.replace(config.target, slot_name=slot, publication_name=slot)
    return dataclasses.replace(config, target=target, offset_table=f"cdc_offsets_{slot}", topic_prefix=slot)


def engine_slot_env(config: EngineConfig) -> dict[str, str]:
    """Environment that makes `manage.py cdc run` use `config`'s slot, publication and offsets."""
    return {
        "CDC_SLOT_NAME": config.target.slot_name,
        "CDC_PUBLICATION_NAME": config.target.publication_name,
        "CDC_OFFSET_TABLE": config.offset_table,
        "CDC_TOPIC_PREFIX": config.topic_prefix,
    }


def engine_slot_drop(config: EngineConfig) -> None:
    """Drops the slot and publication and forgets the offsets (which would point into a dropped slot)."""
    capture_teardown(config.target, dry_run=False)
    offsets_reset(config, dry_run=False)


@contextmanager
def engine_slot(config: EngineConfig) -> Iterator[EngineConfig]:
    """The slot and publication exist, fresh, inside the block: what a killed earlier run left is
    dropped first, and everything is dropped after, also on an error."""
    engine_slot_drop(config)
    try:
        capture_setup(config.target)
        yield config
    finally:
        engine_slot_drop(config)
