"""The shop registers how it runs: a WSGI web process and the relay of its outbox."""

from ops.process_group import service_process_commands


def test_the_shop_runs_a_web_process_and_its_outbox_relay() -> None:
    commands = service_process_commands("shop", port=8123)
    assert set(commands) == {"web", "outbox-relay"}
    web = commands["web"]
    assert "granian" in web[0] and "config.wsgi:application" in web and "8123" in web
    relay = commands["outbox-relay"]
    assert relay[-6:] == ["run", "--outbox", "--database", "shop", "--table", "shop_outbox"]
