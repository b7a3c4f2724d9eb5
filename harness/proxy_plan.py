"""Migration plans written by the proxy's tests and benchmark: a plan's YAML from its backends and
slices, so each test states only what differs (which routes, which phase settings)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml


def plan_route(
    name: str, prefix: str, *, methods: Sequence[str] | None = None, exposure: str | None = None
) -> dict[str, Any]:
    route: dict[str, Any] = {"name": name, "prefix": prefix}
    if methods is not None:
        route["methods"] = list(methods)
    if exposure is not None:
        route["exposure"] = exposure
    return route


def plan_slice(*, service: str, routes: Sequence[Mapping[str, Any]], **sections: Any) -> dict[str, Any]:
    """A slice taken over by `service`; `sections` are the plan's own (shadow, canary, rollback, ...)."""
    return {"service": service, "routes": [dict(route) for route in routes], **sections}


def plan_text(
    *,
    backends: Mapping[str, str],
    slices: Mapping[str, Mapping[str, Any]],
    default_backend: str = "legacy",
) -> str:
    """The plan file's YAML: one URL per backend, the slices as given."""
    plan = {
        "version": 1,
        "default_backend": default_backend,
        "backends": {name: {"urls": [url]} for name, url in backends.items()},
        "slices": {name: dict(spec) for name, spec in slices.items()},
    }
    return yaml.safe_dump(plan, sort_keys=False)
