"""How the shop service runs: its web process (SERVICE=shop) and the relay of its outbox, which
publishes the events the shop writes (`manage.py cdc run --outbox --database shop --table shop_outbox`).
Registered in SERVICE_PROCESSES, so the demo, the tests and the benchmarks start it without the
toolkit knowing it. The caller gives every process the environment with SERVICE=shop."""

from __future__ import annotations

from ops.process_group import granian_wsgi_command, manage_command

OUTBOX_DATABASE = "shop"
OUTBOX_TABLE = "shop_outbox"


WEB_THREADS = 8


def shop_process_commands(*, port: int, web_workers: int = 1) -> dict[str, list[str]]:
    """The shop's web process on 127.0.0.1:port and its outbox relay."""
    return {
        "web": granian_wsgi_command(
            application="config.wsgi:application",
            port=port,
            workers=web_workers,
            # Requests wait on other services (the MES quotes, the shop's internal API): threads keep
            # a worker serving while one waits.
            blocking_threads=WEB_THREADS,
        ),
        "outbox-relay": manage_command(
            "cdc", "run", "--outbox", "--database", OUTBOX_DATABASE, "--table", OUTBOX_TABLE
        ),
    }
