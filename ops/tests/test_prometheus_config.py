"""The prometheus.yml renderer: registered jobs, overrides, filters, and promtool's verdict."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from ops.prometheus_config import ScrapeConfigError, prometheus_config_render, scrape_jobs

REGISTERED = {
    "proxy": {"targets": ["127.0.0.1:8080"], "metrics_path": "/_strangler/metrics"},
    "legacy-web": {"targets": ["127.0.0.1:8000"]},
    "cdc-legacy": "127.0.0.1:9102",
}


def test_overrides_replace_a_jobs_targets_and_keep_its_path() -> None:
    jobs = {
        j.name: j for j in scrape_jobs(REGISTERED, overrides=["proxy=10.0.0.5:1234", "proxy=10.0.0.6:1234"])
    }
    assert jobs["proxy"].targets == ("10.0.0.5:1234", "10.0.0.6:1234")
    assert jobs["proxy"].metrics_path == "/_strangler/metrics"
    assert jobs["cdc-legacy"].targets == ("127.0.0.1:9102",)


def test_only_named_jobs_are_kept_and_unknown_ones_are_refused() -> None:
    assert [j.name for j in scrape_jobs(REGISTERED, only=["legacy-web"])] == ["legacy-web"]
    with pytest.raises(ScrapeConfigError, match="No job is named nope"):
        scrape_jobs(REGISTERED, only=["nope"])
    with pytest.raises(ScrapeConfigError, match="not job=host:port"):
        scrape_jobs(REGISTERED, overrides=["proxy=no-port"])


def test_the_rendered_file_passes_promtool(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("groups: []\n")
    text = prometheus_config_render(scrape_jobs(REGISTERED), scrape_interval="30s", rule_files=[rules])
    document = yaml.safe_load(text)
    assert document["global"]["scrape_timeout"] == "10s"
    assert [c["job_name"] for c in document["scrape_configs"]] == ["proxy", "legacy-web", "cdc-legacy"]
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    checked = subprocess.run(
        ["/usr/bin/promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
