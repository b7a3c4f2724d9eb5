"""How the production service runs: its web process (health and metrics only: it has no public
route), its consumer group, its stage runner and the relay of its outbox. Registered in
SERVICE_PROCESSES, so the demo, the tests and the benchmarks start it the way the README says,
every one of them with SERVICE=mes_production."""

from __future__ import annotations

from ops.process_group import granian_wsgi_command, manage_command

CONSUMER_GROUP = "production"
OUTBOX_DATABASE = "production"
OUTBOX_TABLE = "production_outbox"


def mes_production_process_commands(*, port: int, web_workers: int = 1) -> dict[str, list[str]]:
    """The production service's processes, its web one on 127.0.0.1:port."""
    return {
        "web": granian_wsgi_command(application="config.wsgi:application", port=port, workers=web_workers),
        "consumer": manage_command("consume", CONSUMER_GROUP),
        "stages": manage_command("production_stages"),
        "outbox": manage_command(
            "cdc", "run", "--outbox", "--database", OUTBOX_DATABASE, "--table", OUTBOX_TABLE
        ),
    }
