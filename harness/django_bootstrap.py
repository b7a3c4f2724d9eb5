"""Django set up for a script run as `python bench/<name>.py`: the settings module, the SERVICE it
runs as and the databases it may touch are fixed before `django.setup()` reads them."""

from __future__ import annotations

import os

import django


def bench_database_prefix(benchmark: str) -> str:
    """`<DB_NAME_PREFIX>bench_<benchmark>_`: each benchmark has databases of its own, apart from
    the developer's (whatever DB_NAME_PREFIX says) and from every other benchmark's."""
    return f"{os.environ.get('DB_NAME_PREFIX', '')}bench_{benchmark}_"


def django_start(*, service: str, db_name_prefix: str, log_level: str = "WARNING") -> None:
    """Sets up Django in this process as `service` on the databases named `<db_name_prefix>...`.

    The prefix and SERVICE are set, not defaulted: a script that drops its databases at the end
    must never run on the developer's, whatever the shell exports. Child processes inherit both.
    This process loads every service's apps (it seeds one database and reads another directly);
    its children get `config.settings`, which loads only their SERVICE's apps, as a user's do."""
    os.environ["DB_NAME_PREFIX"] = db_name_prefix
    os.environ["SERVICE"] = service
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.all_services"
    os.environ.setdefault("LOG_LEVEL", log_level)
    django.setup()
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"


def bench_django_start(benchmark: str, *, service: str = "legacy") -> str:
    """Sets up Django for `python bench/<benchmark>.py` on the benchmark's own databases and
    returns their prefix (what harness.own_databases creates fresh and drops)."""
    prefix = bench_database_prefix(benchmark)
    django_start(service=service, db_name_prefix=prefix)
    return prefix
