import sys

from django.apps import AppConfig


def process_role(argv: list[str]) -> str:
    """What this process is within its service, for traces: web, celery-worker, celery-beat, or
    the manage.py command it runs (`consume production`, `cdc run`, `strangler serve`, ...)."""
    program = argv[0].rsplit("/", 1)[-1] if argv else ""
    if "granian" in program or "gunicorn" in program or "uvicorn" in program:
        return "web"
    if "celery" in program:
        return "celery-beat" if "beat" in argv[1:] else "celery-worker"
    if program == "manage.py" and len(argv) > 1:
        words = [a for a in argv[1:3] if not a.startswith("-")]
        return " ".join(words)
    return program or "python"


class OpsConfig(AppConfig):
    name = "ops"
    label = "ops"

    def ready(self) -> None:
        from django.conf import settings

        from ops import logs, tracing

        logs.uncaught_as_json()
        tracing.configure(service=settings.SERVICE, role=process_role(sys.argv))
