"""How the pricing service runs (every process with SERVICE=mes_pricing): its web process, the public
MES API on 127.0.0.1:port (8003 by convention, see legacy/migration_plan.yaml), and the consumers of
its two projections: the catalogue's cost data (`consume pricing-catalogue`) and the production
orders behind the deprecated read API (`consume pricing-production-orders`). The catalogue's events
come from the CDC process family (`SERVICE=cdc manage.py cdc run --capture catalogue`), not from
here. Registered in SERVICE_PROCESSES, so the demo, the tests and the benchmarks start it the way the
README says."""

from __future__ import annotations

from mes_pricing.catalogue.processes import CONSUMER_GROUP as CATALOGUE_GROUP
from ops.process_group import granian_wsgi_command, manage_command

PRODUCTION_ORDERS_GROUP = "pricing-production-orders"
DEFAULT_PORT = 8003
# A quote waits on PostgreSQL and Redis: threads keep a worker serving while one waits.
WEB_THREADS = 8


def pricing_process_commands(*, port: int = DEFAULT_PORT, web_workers: int = 1) -> dict[str, list[str]]:
    """The pricing service's web process on 127.0.0.1:port and its projections' consumers."""
    return {
        "web": granian_wsgi_command(
            application="config.wsgi:application",
            port=port,
            workers=web_workers,
            blocking_threads=WEB_THREADS,
        ),
        "catalogue-consumer": manage_command("consume", CATALOGUE_GROUP),
        "production-orders-consumer": manage_command("consume", PRODUCTION_ORDERS_GROUP),
    }
