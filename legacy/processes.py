"""How the legacy monolith runs: its web process, its Celery worker on the shop, CRM and MES
queues, and Celery beat with the CRM's polling orchestrator. Registered in SERVICE_PROCESSES, so
the demo, the tests and the benchmarks start it without the toolkit knowing its queues."""

from __future__ import annotations

from ops.process_group import celery_beat_command, celery_worker_command, granian_wsgi_command

CELERY_APP = "config"
WORKER_QUEUES = ("legacy", "crm", "mes")
# With PRICING_API_URL set, placing an order waits on a quote over HTTP: threads keep the worker
# serving meanwhile. When that URL is the proxy and the pricing slice is not live, the quote comes
# back to this very process; with one thread the order waited on itself until MES_API_TIMEOUT and
# every order was refused (503 pricing_unavailable: tests/integration/test_mes_split_end_to_end.py).
WEB_THREADS = 4


def legacy_process_commands(*, port: int, web_workers: int = 1) -> dict[str, list[str]]:
    """The three processes of the monolith, its web one on 127.0.0.1:port."""
    return {
        "web": granian_wsgi_command(
            application="config.wsgi:application",
            port=port,
            workers=web_workers,
            blocking_threads=WEB_THREADS,
        ),
        "worker": celery_worker_command(app=CELERY_APP, queues=WORKER_QUEUES),
        "beat": celery_beat_command(app=CELERY_APP, tag=str(port)),
    }
