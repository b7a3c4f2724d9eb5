"""A vhost of one's own on the real broker: empty at the start even after a killed run, usable
through its URL, gone at the end."""

import subprocess

import amqp
import kombu
import pytest

from harness.rabbitmq_vhost import (
    broker_address,
    rabbitmq_vhost,
    rabbitmqctl,
    url_through,
    vhost_name,
    vhost_url,
)

pytestmark = pytest.mark.integration


def vhosts() -> list[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], check=True, capture_output=True, text=True, timeout=60
    )
    return listed.stdout.split()


def queue_depth(url: str, queue: str) -> int:
    with kombu.Connection(url) as connection:
        return connection.default_channel.queue_declare(queue=queue, passive=True).message_count


def test_a_vhost_starts_empty_even_where_a_killed_run_left_messages() -> None:
    name = vhost_name("harness-test")
    # What a run killed before its end leaves: the vhost, with a message waiting in a queue.
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    with kombu.Connection(vhost_url(name)) as connection:
        queue = kombu.Queue("left-behind", durable=True)
        queue(connection.default_channel).declare()
        connection.Producer().publish(b"old", routing_key="left-behind")
    assert queue_depth(vhost_url(name), "left-behind") == 1

    with rabbitmq_vhost(name) as url:
        assert name in vhosts()
        with pytest.raises(amqp.exceptions.NotFound):
            queue_depth(url, "left-behind")
    assert name not in vhosts()


def test_the_url_keeps_the_broker_and_names_the_vhost() -> None:
    assert vhost_url("a/b", broker="amqp://u:p@h:5673/x") == "amqp://u:p@h:5673/a%2Fb"


def test_a_url_through_a_forwarder_keeps_the_credentials_and_the_vhost() -> None:
    url = vhost_url("x_test-gw0", broker="amqp://u:p@broker.example:5673/")
    assert broker_address(url) == ("broker.example", 5673)
    assert url_through(url, port=40001) == "amqp://u:p@127.0.0.1:40001/x_test-gw0"
    assert broker_address("amqp://127.0.0.1/v") == ("127.0.0.1", 5672)
    assert url_through("amqp://127.0.0.1/v", port=40002) == "amqp://127.0.0.1:40002/v"
