"""The catalogue projection's processes, as the lead merges them into mes_pricing/processes.py."""

from mes_pricing.catalogue.processes import PROCESS_SERVICES, catalogue_process_commands


def test_the_consumer_and_the_capture_run_through_manage_py() -> None:
    commands = catalogue_process_commands()
    assert set(commands) == set(PROCESS_SERVICES) == {"catalogue-consumer", "catalogue-capture"}
    assert commands["catalogue-consumer"][-2:] == ["consume", "pricing-catalogue"]
    assert commands["catalogue-capture"][-4:] == ["cdc", "run", "--capture", "catalogue"]
    assert PROCESS_SERVICES == {"catalogue-consumer": "mes_pricing", "catalogue-capture": "cdc"}
