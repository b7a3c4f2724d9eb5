"""How the pricing service runs: its web process (SERVICE=mes_pricing), the public MES API on
127.0.0.1:port (8003 by convention, see legacy/migration_plan.yaml). Registered in SERVICE_PROCESSES,
so the demo, the tests and the benchmarks start it the way the README says; the caller gives every
process the environment with SERVICE=mes_pricing."""

from __future__ import annotations

from ops.process_group import granian_wsgi_command

DEFAULT_PORT = 8003
# A quote waits on PostgreSQL and Redis: threads keep a worker serving while one waits.
WEB_THREADS = 8


def pricing_process_commands(*, port: int = DEFAULT_PORT, web_workers: int = 1) -> dict[str, list[str]]:
    """The pricing service's web process on 127.0.0.1:port."""
    return {
        "web": granian_wsgi_command(
            application="config.wsgi:application",
            port=port,
            workers=web_workers,
            blocking_threads=WEB_THREADS,
        ),
    }
