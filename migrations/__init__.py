"""The data-migration toolkit: backfill, continuous sync, verification, cutover, reverse sync."""
