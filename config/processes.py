"""The processes this codebase runs as (the SERVICE setting): the apps and the database of each, and
which SERVICE a `manage.py` command needs.

Read by the settings and by manage.py before Django is set up, so this module imports no Django.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SERVICE = "legacy"

# Every process has these: auth, sessions and the admin work against its own database.
FRAMEWORK_APPS = (
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "ops",
)


@dataclass(frozen=True)
class Process:
    apps: tuple[str, ...]  # besides FRAMEWORK_APPS
    database: str  # the logical database that is this process's "default"
    # Apps whose `manage.py` commands this process owns; None: all of `apps`. A process that loads
    # another's app as a library (the toolkit loads `strangler` for the proxy's control plane) does
    # not take over that app's commands.
    command_apps: tuple[str, ...] | None = None

    @property
    def owned_command_apps(self) -> tuple[str, ...]:
        return self.apps if self.command_apps is None else self.command_apps


# `cdc` is also the event-consuming library: a service's workers run `manage.py consume`.
PROCESSES: dict[str, Process] = {
    "legacy": Process(apps=("legacy.shop", "legacy.crm", "legacy.mes", "cdc"), database="legacy"),
    "shop": Process(apps=("shop_app", "cdc"), database="shop"),
    "crm": Process(apps=("crm_app", "cdc"), database="crm"),
    "mes_pricing": Process(
        apps=("mes_pricing", "mes_pricing.catalogue", "mes_pricing.production_orders", "cdc"),
        database="pricing",
    ),
    "mes_production": Process(apps=("mes_production", "cdc"), database="production"),
    "proxy": Process(apps=("strangler",), database="control"),
    "cdc": Process(apps=("cdc",), database="control"),
    # The data-migration toolkit (`manage.py migrate_data`): reads the plan and the proxy's state in
    # `control`, and every service's database under its own alias.
    "migrations": Process(
        apps=("migrations", "strangler", "cdc"), database="control", command_apps=("migrations",)
    ),
}
SERVICES = tuple(PROCESSES)


class WrongService(Exception):
    """A command was started under a SERVICE that does not load the app it belongs to."""


def installed_apps(service: str) -> list[str]:
    return [*FRAMEWORK_APPS, *PROCESSES[service].apps]


def all_apps() -> list[str]:
    """Every process's apps, once each (for a process that works on every database: the test suite)."""
    apps = dict.fromkeys(FRAMEWORK_APPS)
    for process in PROCESSES.values():
        apps.update(dict.fromkeys(process.apps))
    return list(apps)


def _has_command(app: str, command: str) -> bool:
    spec = importlib.util.find_spec(app)
    locations = spec.submodule_search_locations if spec else None
    return bool(locations) and any(
        (Path(location) / "management" / "commands" / f"{command}.py").is_file()
        for location in locations or ()
    )


def service_for_command(command: str, requested: str | None) -> str:
    """The SERVICE to run `manage.py <command>` under: `requested` when it loads the command's app,
    else, with no SERVICE requested, the one process that does (the default one first).

    Raises WrongService with a sentence naming the SERVICE the command needs.
    """
    if requested is not None and requested not in PROCESSES:
        raise WrongService(f"SERVICE={requested!r} is not one of {', '.join(SERVICES)}.")
    owners = [
        service
        for service, process in PROCESSES.items()
        if any(_has_command(app, command) for app in process.owned_command_apps)
    ]
    if not owners:  # a framework command (migrate, shell, db_setup, ...) or an unknown one
        return requested or DEFAULT_SERVICE
    if requested is not None:
        if requested in owners:
            return requested
        needed = " or ".join(f"SERVICE={s}" for s in owners)
        raise WrongService(
            f"`manage.py {command}` belongs to the {owners[0]} process: run it with {needed} "
            f"(or with SERVICE unset), not SERVICE={requested}."
        )
    if DEFAULT_SERVICE in owners:
        return DEFAULT_SERVICE
    if len(owners) == 1:
        return owners[0]
    raise WrongService(
        f"`manage.py {command}` runs in several processes ({', '.join(owners)}): set SERVICE to one of them."
    )
