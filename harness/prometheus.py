"""A real Prometheus (Debian's /usr/bin/prometheus) for tests, benchmarks and dashboard checks:
start it on a rendered configuration, wait for its targets, run PromQL over its HTTP API, and say
which of a list of queries return no data."""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.waiting import wait_http_ok, wait_until
from ops.process_group import ManagedProcess, ProcessGroup, free_port

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


class PrometheusMissing(RuntimeError):
    """Debian's prometheus is not installed (`make system-packages` installs it)."""


@dataclass
class Prometheus:
    process: ManagedProcess
    url: str

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
            document = json.loads(response.read())
        if document.get("status") != "success":
            raise RuntimeError(f"Prometheus answered {document}")
        return document["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar as one sample) `promql` evaluates to now."""
        data = self.api("query", query=promql)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def targets_down(self) -> list[str]:
        """`job instance: error` for each active target whose last scrape failed or has not run."""
        return [
            f"{t['labels']['job']} {t['labels']['instance']}: {t.get('lastError') or t['health']}"
            for t in self.targets()
            if t["health"] != "up"
        ]

    def wait_targets_up(self, *, seconds: float = 60) -> None:
        wait_until(
            lambda: self.targets() and not self.targets_down(),
            seconds=seconds,
            interval=0.5,
            what="every Prometheus target up",
            process=self.process,
        )

    def queries_without_data(self, queries: Iterable[str], *, numbers: bool = False) -> list[str]:
        """Those of `queries` that return no sample now (an error counts as no data, with its text);
        with `numbers`, also those whose every sample is NaN (a quantile or ratio of nothing)."""
        empty = []
        for promql in queries:
            try:
                samples = self.query(promql)
                if not samples or (numbers and all(_nan(s["value"][1]) for s in samples)):
                    empty.append(promql)
            except Exception as exc:  # noqa: BLE001 - a bad query is reported, not raised
                empty.append(f"{promql} ({exc})")
        return empty

    def wait_queries_have_data(
        self, queries: Iterable[str], *, seconds: float = 60, numbers: bool = False
    ) -> None:
        """Waits until each of `queries` returns data (with `numbers`: a sample that is not NaN); the
        error names those that never did."""
        wanted = list(queries)
        try:
            wait_until(
                lambda: not self.queries_without_data(wanted, numbers=numbers),
                seconds=seconds,
                interval=0.5,
                what="every query returning data",
                process=self.process,
            )
        except TimeoutError as exc:
            raise AssertionError(
                f"queries without data after {seconds} s: "
                f"{self.queries_without_data(wanted, numbers=numbers)}"
            ) from exc


def _nan(value: str) -> bool:
    return value.lower() in ("nan", "+nan", "-nan")


def prometheus_start(group: ProcessGroup, config: Path, data_dir: Path, *, log_dir: Path) -> Prometheus:
    """Prometheus on a free loopback port with `config`, its storage in `data_dir`."""
    if not Path(PROMETHEUS).exists() and shutil.which("prometheus") is None:
        raise PrometheusMissing(f"{PROMETHEUS} is missing: run `make system-packages` (Debian's prometheus).")
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    process = group.start(
        ManagedProcess(
            f"prometheus-{port}",
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            {},
            log_dir / f"prometheus-{port}.log",
        )
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/-/ready", seconds=30, process=process.popen)
    return Prometheus(process=process, url=url)
