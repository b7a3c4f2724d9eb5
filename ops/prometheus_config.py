"""A prometheus.yml that scrapes every process: the jobs the system registers in the
PROMETHEUS_SCRAPE_TARGETS setting (job name = process kind), with command-line overrides."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_JOB = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_TARGET = re.compile(r"^(?P<address>[A-Za-z0-9_.\-\[\]:]+:\d{1,5})(?P<path>/\S*)?$")
_DURATION = re.compile(r"^(?P<number>\d+)(?P<unit>ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScrapeConfigError(ValueError):
    """A target, job or interval Prometheus would not accept; the message says which."""


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    targets: tuple[str, ...]
    metrics_path: str = "/metrics"


def _job(name: str, spec: Any) -> ScrapeJob:
    if not _JOB.match(name):
        raise ScrapeConfigError(f"Job name {name!r} may hold only letters, digits and _.:-.")
    if isinstance(spec, str):
        spec = {"targets": [spec]}
    targets = tuple(spec.get("targets", ()))
    path = spec.get("metrics_path", "/metrics")
    for target in targets:
        if not _TARGET.match(target) or "/" in target:
            raise ScrapeConfigError(f"Target {target!r} of job {name} is not host:port.")
    return ScrapeJob(name=name, targets=targets, metrics_path=path)


def scrape_jobs(
    registered: Mapping[str, Any], *, overrides: Iterable[str] = (), only: Sequence[str] = ()
) -> list[ScrapeJob]:
    """The registered jobs ({job: {"targets": [...], "metrics_path": ...}} or {job: "host:port"}),
    with each `job=host:port[/path]` override replacing that job's targets (or adding a job), and
    only the jobs named in `only` when it is not empty."""
    jobs = {name: _job(name, spec) for name, spec in registered.items()}
    replaced: dict[str, list[str]] = {}
    for override in overrides:
        name, sep, target = override.partition("=")
        match = _TARGET.match(target)
        if not sep or not match:
            raise ScrapeConfigError(f"--target {override!r} is not job=host:port[/metrics-path].")
        base = jobs.get(name) or _job(name, {"targets": []})
        path = match.group("path") or base.metrics_path
        targets = [*replaced.get(name, []), match.group("address")]
        replaced[name] = targets
        jobs[name] = _job(name, {"targets": targets, "metrics_path": path})
    if only:
        unknown = sorted(set(only) - set(jobs))
        if unknown:
            raise ScrapeConfigError(
                f"No job is named {', '.join(unknown)} (known: {', '.join(sorted(jobs))})."
            )
        jobs = {name: jobs[name] for name in only}
    return [job for job in jobs.values() if job.targets]


def prometheus_config_render(
    jobs: Sequence[ScrapeJob],
    *,
    scrape_interval: str = "15s",
    evaluation_interval: str | None = None,
    rule_files: Sequence[Path] = (),
) -> str:
    """prometheus.yml text for `jobs` (each job's targets labelled with its job name)."""
    for interval in (scrape_interval, evaluation_interval or scrape_interval):
        if not _DURATION.match(interval):
            raise ScrapeConfigError(f"Interval {interval!r} is not a Prometheus duration such as 15s.")
    document: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            # Prometheus refuses a timeout longer than the interval.
            "scrape_timeout": scrape_interval if _seconds(scrape_interval) <= 10 else "10s",
            "evaluation_interval": evaluation_interval or scrape_interval,
        },
    }
    if rule_files:
        document["rule_files"] = [str(path) for path in rule_files]
    document["scrape_configs"] = [
        {
            "job_name": job.name,
            "metrics_path": job.metrics_path,
            "static_configs": [{"targets": list(job.targets)}],
        }
        for job in jobs
    ]
    return "# Rendered by `manage.py observability prometheus-config`.\n" + yaml.safe_dump(
        document, sort_keys=False
    )


def _seconds(duration: str) -> float:
    match = _DURATION.match(duration)
    assert match is not None
    return int(match.group("number")) * _UNIT_SECONDS[match.group("unit")]
