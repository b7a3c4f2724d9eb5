"""The nginx export of a route's sunset: past it at export time, the route answers 410 like the proxy."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from strangler import services
from strangler.nginx_export import nginx_config_render
from strangler.plan import plan_parse
from strangler.selectors import routing_snapshot

pytestmark = pytest.mark.django_db(databases=["default", "control"])

PLAN = """
version: 1
default_backend: legacy
backends:
  legacy: {urls: ["http://127.0.0.1:8001"]}
  new: {urls: ["http://127.0.0.1:8002"]}
slices:
  old-api:
    service: new
    routes:
      - {name: old, prefix: /old/, sunset: "2027-06-01T00:00:00Z"}
      - {name: kept, prefix: /kept/}
"""


def location(config: str, prefix: str) -> str:
    match = re.search(rf"    location {re.escape(prefix)} \{{.*?\n    \}}", config, re.S)
    assert match, config
    return match.group(0)


def test_a_route_past_its_sunset_is_exported_as_410_and_one_before_it_is_proxied() -> None:
    services.plan_apply(plan=plan_parse(PLAN), who="test")
    snapshot = routing_snapshot()
    before = nginx_config_render(
        snapshot=snapshot,
        listen="127.0.0.1:9999",
        include_only=True,
        now=datetime(2027, 5, 31, tzinfo=UTC).timestamp(),
    )
    assert "return 410" not in before
    after = nginx_config_render(
        snapshot=snapshot,
        listen="127.0.0.1:9999",
        include_only=True,
        now=datetime(2027, 6, 1, tzinfo=UTC).timestamp(),
    )
    old = location(after, "/old/")
    assert "default_type application/json;" in old
    assert 'add_header Sunset "Tue, 01 Jun 2027 00:00:00 GMT" always;' in old
    body = re.search(r"return 410 '(.*)';", old)
    assert body is not None
    assert json.loads(body.group(1))["error"] == {
        "code": "gone",
        "message": "This path was retired on Tue, 01 Jun 2027 00:00:00 GMT.",
        "details": {"sunset": "Tue, 01 Jun 2027 00:00:00 GMT"},
    }
    assert "return 410" not in location(after, "/kept/")
