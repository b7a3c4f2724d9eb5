"""SERVICE picks a process's apps, and `manage.py` runs each command under the SERVICE that loads
its app: unset, it picks that one; set to another, it refuses with a sentence naming the right one."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from config.processes import WrongService, installed_apps, service_for_command
from ops.process_group import manage_command


def test_a_command_of_one_process_gets_that_process_when_service_is_unset() -> None:
    assert service_for_command("strangler", None) == "proxy"
    assert service_for_command("seed", None) == "legacy"
    # Framework commands run wherever they are asked to, the monolith by default.
    assert service_for_command("migrate", None) == "legacy"
    assert service_for_command("migrate", "proxy") == "proxy"
    # The event library is everyone's: the default process keeps it.
    assert service_for_command("consume", None) == "legacy"
    assert service_for_command("cdc", "cdc") == "cdc"


def test_a_command_under_another_service_is_refused_with_the_service_it_needs() -> None:
    with pytest.raises(WrongService, match="run it with SERVICE=proxy .* not SERVICE=legacy"):
        service_for_command("strangler", "legacy")
    with pytest.raises(WrongService, match="run it with SERVICE=legacy .* not SERVICE=proxy"):
        service_for_command("seed", "proxy")
    with pytest.raises(WrongService, match="is not one of"):
        service_for_command("migrate", "nope")


def test_the_proxy_and_cdc_processes_load_no_legacy_app() -> None:
    for service in ("proxy", "cdc"):
        assert not [app for app in installed_apps(service) if app.startswith("legacy")], service
    assert "strangler" not in installed_apps("legacy")


@pytest.mark.parametrize("service", ["proxy", "cdc", "legacy"])
def test_a_started_process_has_exactly_its_services_apps(service: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SERVICE"}
    result = subprocess.run(
        manage_command(
            "shell",
            "-c",
            "import json; from django.apps import apps; from django.conf import settings; "
            "print(json.dumps([settings.ROOT_URLCONF, [a.name for a in apps.get_app_configs()]]))",
        ),
        env={**env, "SERVICE": service, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    urlconf, apps = json.loads(result.stdout.strip().splitlines()[-1])
    assert urlconf == f"config.urls.{service}"
    assert apps == installed_apps(service)
