"""Instant queries to a Prometheus server (STRANGLER_PROMETHEUS_URL) for the figures of processes
other than this proxy: data-sync lag and CDC lag. Short timeout; any failure is "no figure", said
as such, never a guessed number."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class PromSeries:
    labels: dict[str, str]
    value: float


class PrometheusUnavailable(Exception):
    """The server could not answer the query (a sentence saying why)."""


def prometheus_query(*, base_url: str, promql: str, timeout: float = 1.5) -> list[PromSeries]:
    """The instant vector `promql` evaluates to now."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # the operator's own server
            document = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise PrometheusUnavailable(f"{base_url} did not answer: {exc}") from exc
    if document.get("status") != "success":
        raise PrometheusUnavailable(f"{base_url} refused the query: {document.get('error', '?')}")
    result = document.get("data", {}).get("result", [])
    series = []
    for item in result:
        try:
            series.append(PromSeries(dict(item.get("metric", {})), float(item["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError):
            continue
    return series
