"""A consumer group's RabbitMQ queues declared before any consumer runs, so that events published
by a test or a benchmark wait in them for the group's processes."""

from __future__ import annotations

import kombu
from django.conf import settings

from cdc.consuming.groups import consumer_groups
from cdc.consuming.rabbitmq import Topology, topology_declare


def group_topology_declare(url: str, group_name: str, *, partitions: int | None = None) -> Topology:
    """Declares `group_name`'s exchanges and partition queues on the broker at `url`, with the
    partitions its consumers will use (CONSUMER_PARTITIONS unless they are told otherwise)."""
    group = consumer_groups()[group_name]
    topology = Topology(
        group=group_name,
        exchange=settings.CDC_EXCHANGE,
        partitions=partitions or settings.CONSUMER_PARTITIONS,
    )
    with kombu.Connection(url) as connection:
        topology_declare(connection.channel(), topology, group.bindings())
    return topology
