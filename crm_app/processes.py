"""How the CRM service runs: its web process (the staff API), its consumer group and the relay of
its outbox. Registered in SERVICE_PROCESSES, so the demo, the tests and the benchmarks start it
the way the README says, and every one of them with SERVICE=crm."""

from __future__ import annotations

from ops.process_group import granian_wsgi_command, manage_command

CONSUMER_GROUP = "crm"
OUTBOX_TABLE = "crm_outbox"


WEB_THREADS = 8


def crm_process_commands(*, port: int, web_workers: int = 1) -> dict[str, list[str]]:
    """The CRM's processes, its web one on 127.0.0.1:port (each needs SERVICE=crm in its env)."""
    return {
        "web": granian_wsgi_command(
            application="config.wsgi:application",
            port=port,
            workers=web_workers,
            # Requests wait on other services (the MES quotes, the shop's internal API): threads keep
            # a worker serving while one waits.
            blocking_threads=WEB_THREADS,
        ),
        "consumer": manage_command("consume", CONSUMER_GROUP),
        "outbox": manage_command("cdc", "run", "--outbox", "--database", "crm", "--table", OUTBOX_TABLE),
    }
