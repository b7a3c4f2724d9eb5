"""The alert rules pass `promtool check rules` and their `promtool test rules` unit tests; the checked-in
rules and dashboards are what `manage.py observability alerts | dashboards` generates; every dashboard
query parses as PromQL in a real Prometheus."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.prometheus import prometheus_start
from harness.system_tools import tool_ensure
from ops.dashboards import dashboard_queries
from ops.process_group import PROJECT_ROOT, ProcessGroup, manage_command

RULES = PROJECT_ROOT / "observability" / "prometheus" / "alerts.yml"
RULE_TESTS = PROJECT_ROOT / "observability" / "prometheus" / "alerts_test.yml"


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = tool_ensure("promtool", package="prometheus")
    checked = _run([promtool, "check", "rules", str(RULES)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run([promtool, "test", "rules", str(RULE_TESTS)])
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.parametrize("tool", ["alerts", "dashboards"])
def test_checked_in_files_are_what_the_command_generates(tool: str) -> None:
    run = _run(manage_command("observability", tool, "--check"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "up to date" in run.stdout


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "alerts.yml"
    stale.write_text(RULES.read_text().replace("vector(0.02)", "vector(0.5)", 1))
    run = _run(manage_command("observability", "alerts", "--check", "--output", str(stale)))
    assert run.returncode != 0
    assert "Out of date" in run.stderr


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with nothing to scrape: it parses and evaluates queries."""
    directory = tmp_path_factory.mktemp("prometheus")
    (directory / "prometheus.yml").write_text("scrape_configs: []\n")
    with ProcessGroup() as group:
        yield prometheus_start(group, directory / "prometheus.yml", directory / "data", log_dir=directory).url


def _query_status(base_url: str, expr: str) -> tuple[int, str]:
    body = urllib.parse.urlencode({"query": expr}).encode()
    try:
        with urllib.request.urlopen(f"{base_url}/api/v1/query", data=body, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_every_dashboard_query_parses_as_promql(prometheus_url: str) -> None:
    queries = dashboard_queries()
    assert len({q.dashboard for q in queries}) == 3
    refused = []
    for query in queries:
        status, body = _query_status(prometheus_url, query.expr)
        if status != 200:
            refused.append(f"{query.dashboard} / {query.panel}: {query.expr} -> {status} {body}")
    assert not refused, "\n".join(refused)
    # The check itself: Prometheus refuses what does not parse.
    status, body = _query_status(prometheus_url, "sum by (slice (rate(x[5m]))")
    assert status == 400 and json.loads(body)["errorType"] == "bad_data"


def test_dashboard_json_names_no_undefined_variable() -> None:
    for path in (PROJECT_ROOT / "observability" / "grafana").glob("*.json"):
        dashboard = json.loads(path.read_text())
        defined = {variable["name"] for variable in dashboard["templating"]["list"]}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                for name in re.findall(r"\$\{?(\w+)", target["expr"]):
                    assert name.startswith("__") or name in defined, (path.name, panel["title"])
