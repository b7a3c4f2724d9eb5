"""Consumer groups: a named set of handlers, one per event type, with the inbox they write to.

A group is declared in the consuming app's `consumers.py` (listed in settings.CONSUMER_MODULES)
and run by `manage.py consume <name>`:

    billing = ConsumerGroup("billing", service="billing", inbox=BillingInboxEntry)

    @billing.handles("sales.invoice.paid.v1", InvoicePaid)
    def invoice_paid(event: InvoicePaid, meta: CloudEvent) -> None:
        invoice_settle(invoice_id=event.invoice_id, ...)

Handlers get the payload dataclass and the envelope, never a broker message. A group subscribes to
every version of the event names it handles (`sales.invoice.paid.*`), so a version it does not
know yet arrives and is dead-lettered as unknown instead of being missed in silence.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from cdc.consuming.envelope import CloudEvent, MalformedEvent, event_name
from cdc.consuming.inbox import AbstractInboxEntry
from config.routers import model_database_alias

Handler = Callable[[Any, CloudEvent], None]


@dataclass(frozen=True)
class Route:
    event_type: str
    payload_type: type[Any]
    handler: Handler


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic semantics: `*` matches one dot-separated word, `#` zero or more."""
    words, keys = pattern.split("."), routing_key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(words):
            return j == len(keys)
        if words[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(keys) + 1))
        return j < len(keys) and words[i] in ("*", keys[j]) and match(i + 1, j + 1)

    return match(0, 0)


class ConsumerGroup:
    def __init__(
        self,
        name: str,
        *,
        service: str,
        inbox: type[AbstractInboxEntry],
        extra_bindings: Iterable[str] = (),
    ) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise ValueError(f"consumer group name {name!r} must be lowercase letters, digits and dashes")
        self.name = name
        # The SERVICE whose database holds the inbox and the handlers' effects.
        self.service = service
        self.inbox = inbox
        self.extra_bindings = tuple(extra_bindings)
        self.routes: dict[str, Route] = {}
        register(self)

    def handles(self, event_type: str, payload_type: type[Any]) -> Callable[[Handler], Handler]:
        event_name(event_type)  # validates the versioned form
        if not dataclasses.is_dataclass(payload_type):
            raise TypeError(f"the payload of {event_type} must be a dataclass, not {payload_type!r}")
        if event_type in self.routes:
            raise ValueError(f"{self.name} already handles {event_type}")

        def register_handler(handler: Handler) -> Handler:
            self.routes[event_type] = Route(event_type, payload_type, handler)
            return handler

        return register_handler

    def bindings(self) -> list[str]:
        """Topic patterns this group subscribes to: every version of each handled event name."""
        names = sorted({f"{event_name(t)}.*" for t in self.routes} | set(self.extra_bindings))
        return names

    def subscribes_to(self, event_type: str) -> bool:
        """Whether the group's bindings match `event_type` (a Kafka topic carries every type)."""
        return any(topic_matches(pattern, event_type) for pattern in self.bindings())

    def route(self, event_type: str) -> Route:
        route = self.routes.get(event_type)
        if route is None:
            known = ", ".join(sorted(self.routes))
            raise MalformedEvent(
                MalformedEvent.UNKNOWN_TYPE, f"{self.name} has no handler for {event_type} (handles {known})"
            )
        return route

    def database(self) -> str:
        """The connection alias of the inbox, where every handler's effect must be written too."""
        return model_database_alias(self.inbox)


_groups: dict[str, ConsumerGroup] = {}


def register(group: ConsumerGroup) -> None:
    existing = _groups.get(group.name)
    if existing is not None and existing is not group:
        raise ValueError(f"two consumer groups are named {group.name!r}")
    _groups[group.name] = group


def consumer_groups() -> dict[str, ConsumerGroup]:
    """Every group defined by the modules in settings.CONSUMER_MODULES."""
    for module in settings.CONSUMER_MODULES:
        importlib.import_module(module)
    return dict(_groups)
