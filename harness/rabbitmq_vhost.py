"""A RabbitMQ vhost of one's own for a test session, a test or a benchmark: its queues, dead
letters and counts start empty and go when it is deleted, and nothing touches another's vhost."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def rabbitmqctl(*args: str, check: bool = True) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=check, capture_output=True, timeout=60)


def vhost_name(purpose: str, *, unique: bool = True) -> str:
    """`<DB_NAME_PREFIX><purpose>[-<random>]`: the prefix keeps checkouts sharing a broker apart."""
    name = f"{os.environ.get('DB_NAME_PREFIX', '')}{purpose}"
    return f"{name}-{uuid.uuid4().hex[:8]}" if unique else name


def vhost_url(vhost: str, *, broker: str | None = None) -> str:
    """The AMQP URL of `vhost` on the broker of AMQP_URL (user and address kept, vhost replaced)."""
    parts = urlsplit(broker or os.environ.get("AMQP_URL") or DEFAULT_BROKER)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def broker_address(url: str) -> tuple[str, int]:
    """The host and port of the broker an AMQP URL names (what a forwarder in front of it targets)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


def url_through(url: str, *, port: int, host: str = "127.0.0.1") -> str:
    """`url` reached through host:port instead (a forwarder's): user, password and vhost kept."""
    parts = urlsplit(url)
    credentials, _, _ = parts.netloc.rpartition("@")
    address = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{credentials}@{address}" if credentials else address))


@contextmanager
def rabbitmq_vhost(vhost: str, *, broker: str | None = None) -> Iterator[str]:
    """Creates `vhost` empty (a leftover of a killed run is deleted first), yields its AMQP URL,
    and deletes it at the end. The broker must be local: rabbitmqctl manages it."""
    user = urlsplit(vhost_url(vhost, broker=broker)).username or "guest"
    rabbitmqctl("delete_vhost", vhost, check=False)
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield vhost_url(vhost, broker=broker)
    finally:
        rabbitmqctl("delete_vhost", vhost, check=False)
