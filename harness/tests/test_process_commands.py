"""The toolkit starts a service's processes from what the service registers in SERVICE_PROCESSES."""

import pytest

from ops.process_group import UnknownService, service_process_commands


def test_the_legacy_monolith_registers_its_web_worker_and_scheduler() -> None:
    commands = service_process_commands("legacy", port=18123, web_workers=2)
    assert set(commands) == {"web", "worker", "beat"}
    web = commands["web"]
    assert web[0].endswith("granian") and web[web.index("--port") + 1] == "18123"
    assert web[web.index("--workers") + 1] == "2"
    worker = commands["worker"]
    assert worker[worker.index("-Q") + 1] == "legacy,crm,mes"
    assert "beat" in commands["beat"]


def test_a_service_without_registered_processes_is_refused_by_name(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SERVICE_PROCESSES = {"legacy": "legacy.processes:legacy_process_commands"}
    with pytest.raises(UnknownService, match="'shop'.*registered: \\['legacy'\\]"):
        service_process_commands("shop", port=1)


def test_the_registration_is_resolved_from_the_setting(settings) -> None:  # type: ignore[no-untyped-def]
    settings.SERVICE_PROCESSES = {"other": "harness.tests.process_registration:other_commands"}
    assert service_process_commands("other", port=7) == {"web": ["serve", "7", "1"]}
