"""How the legacy monolith runs: its web process, its Celery worker on the shop, CRM and MES
queues, and Celery beat with the CRM's polling orchestrator. Registered in SERVICE_PROCESSES, so
the demo, the tests and the benchmarks start it without the toolkit knowing its queues."""

from __future__ import annotations

from ops.process_group import celery_beat_command, celery_worker_command, granian_wsgi_command

CELERY_APP = "config"
WORKER_QUEUES = ("legacy", "crm", "mes")


def legacy_process_commands(*, port: int, web_workers: int = 1) -> dict[str, list[str]]:
    """The three processes of the monolith, its web one on 127.0.0.1:port."""
    return {
        "web": granian_wsgi_command(application="config.wsgi:application", port=port, workers=web_workers),
        "worker": celery_worker_command(app=CELERY_APP, queues=WORKER_QUEUES),
        "beat": celery_beat_command(app=CELERY_APP, tag=str(port)),
    }
