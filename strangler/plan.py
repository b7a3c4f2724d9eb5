"""The migration plan file (YAML or JSON): parsing and validation that names the path of each bad field.

A plan declares backends, the default backend for paths no slice owns, and slices with their routes,
shadow noise rules, gates and rollback bounds. `${NAME}` in a backend URL is read from the environment;
`${NAME:-default}` falls back to the default when NAME is unset or empty. A route may carry a
`sunset` date (HTTP-date or ISO 8601, `${...}` expanded the same way): after it the proxy answers
that route 410 Gone itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import yaml

from ops.deprecation import moment_parse
from strangler.models import Exposure

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PATH_PREFIX = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")


class PlanError(Exception):
    """The plan is invalid; `problems` lists every "path: what is wrong" found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("The migration plan is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class BackendSpec:
    name: str
    urls: list[str]
    health_path: str


@dataclass(frozen=True)
class RouteSpec:
    name: str
    prefix: str
    pattern: str
    methods: list[str]
    exposure: str
    # A route whose every method only reads (a query sent by POST, such as a price quote): the proxy
    # shadows and canaries it like a GET and never holds or pins it as a write.
    read_only: bool = False
    # After this moment the proxy answers the route 410 Gone itself (RFC 8594's sunset).
    sunset: datetime | None = None


@dataclass(frozen=True)
class SliceSpec:
    name: str
    service: str
    legacy: str
    tables: list[str]
    routes: list[RouteSpec]
    settings: dict[str, Any] = field(
        default_factory=dict
    )  # Slice model fields from shadow/canary/gates/rollback
    # Slices that must be live before this one's cutover (its service reads their data through them).
    requires: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    default_backend: str
    default_exposure: str
    backends: list[BackendSpec]
    slices: list[SliceSpec]
    digest: str


# Sections of a slice, each mapping plan keys to (Slice field, type, check).
_NUMBER = (int, float)
_SLICE_SECTIONS: dict[str, dict[str, tuple[str, tuple[type, ...], str]]] = {
    "shadow": {
        "sample_rate": ("shadow_sample_rate", _NUMBER, "fraction"),
        "compare_headers": ("shadow_compare_headers", (list,), "header_list"),
        "ignore": ("shadow_ignore", (dict,), "ignore_rules"),
    },
    "canary": {"pin_after_write_seconds": ("pin_after_write_seconds", _NUMBER, "non_negative")},
    "gates": {
        "max_sync_lag_seconds": ("max_sync_lag_seconds", _NUMBER, "non_negative"),
        "max_shadow_diff_rate": ("max_shadow_diff_rate", _NUMBER, "fraction"),
        "min_shadow_requests": ("min_shadow_requests", (int,), "non_negative"),
        "soak_seconds": ("soak_seconds", _NUMBER, "non_negative"),
    },
    "rollback": {
        "max_error_rate_delta": ("max_error_rate_delta", _NUMBER, "fraction"),
        "max_p99_ratio": ("max_p99_ratio", _NUMBER, "positive"),
        "p99_slack_ms": ("p99_slack_ms", _NUMBER, "non_negative"),
        "intervals": ("rollback_intervals", (int,), "positive"),
        "min_interval_requests": ("min_interval_requests", (int,), "positive"),
    },
    "write_freeze": {"max_held": ("write_freeze_max_held", (int,), "positive")},
}


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(
        self, value: Any, path: str, *, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
    ) -> bool:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {type(value).__name__}")
            return False
        for key in sorted(set(value) - allowed, key=str):
            self.fail(f"{path}.{key}", f"unknown field; expected one of {', '.join(sorted(allowed))}")
        for key in sorted(required - set(value)):
            self.fail(f"{path}.{key}", "is required")
        return True

    def name(self, value: Any, path: str) -> bool:
        if not isinstance(value, str) or not _NAME.match(value):
            self.fail(path, f"{value!r} is not a name (lower-case letters, digits, '-' or '_', at most 64)")
            return False
        return True


def _expand_env(value: str, path: str, checker: _Checker) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name) or default
        if value is None:
            checker.fail(path, f"refers to ${{{name}}}, which is not set in the environment")
            return ""
        return value

    return _ENV_REF.sub(replace, value)


def _check_url(url: Any, path: str, checker: _Checker) -> str | None:
    if not isinstance(url, str):
        checker.fail(path, f"must be a URL string, not {type(url).__name__}")
        return None
    url = _expand_env(url, path, checker)
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        checker.fail(path, f"{url!r} must be http://host:port (the proxy speaks plain HTTP/1.1 upstream)")
        return None
    if parts.path not in ("", "/") or parts.query:
        checker.fail(path, f"{url!r} must not have a path or query; routes keep the request path")
        return None
    return f"http://{parts.hostname}:{parts.port}"


def _check_setting(value: Any, path: str, expected: tuple[type, ...], rule: str, checker: _Checker) -> bool:
    before = len(checker.problems)
    if isinstance(value, bool) or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in expected)
        checker.fail(path, f"must be {names}, not {type(value).__name__}")
        return False
    value = cast(Any, value)  # isinstance with a tuple of types narrows to object
    if rule == "fraction" and not 0 <= value <= 1:
        checker.fail(path, f"{value} must be between 0 and 1")
    elif rule == "non_negative" and value < 0:
        checker.fail(path, f"{value} must not be negative")
    elif rule == "positive" and value <= 0:
        checker.fail(path, f"{value} must be greater than 0")
    elif rule == "header_list":
        for i, header in enumerate(value):
            if not isinstance(header, str) or not re.match(r"^[A-Za-z0-9-]+$", header):
                checker.fail(f"{path}[{i}]", f"{header!r} is not a header name")
    elif rule == "ignore_rules":
        for prefix, rules in value.items():
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                checker.fail(f"{path}.{prefix}", "keys are path prefixes starting with '/'")
            if not isinstance(rules, list) or not all(isinstance(r, str) and r for r in rules):
                checker.fail(f"{path}.{prefix}", "must be a list of JSON path globs such as 'results.*.id'")
    return len(checker.problems) == before


def _check_sunset(raw: Any, path: str, checker: _Checker) -> tuple[bool, datetime | None]:
    """`sunset:` of a route, after `${NAME:-default}` expansion; empty means the route has none."""
    if raw is None:
        return True, None
    if not isinstance(raw, str):
        checker.fail(path, f"must be a date string, not {type(raw).__name__}")
        return False, None
    before = len(checker.problems)
    text = _expand_env(raw, path, checker)
    if len(checker.problems) != before:
        return False, None
    if not text.strip():
        return True, None
    try:
        return True, moment_parse(text)
    except ValueError as exc:
        checker.fail(path, str(exc))
        return False, None


def _check_route(raw: Any, path: str, checker: _Checker) -> RouteSpec | None:
    allowed = {"name", "prefix", "pattern", "methods", "exposure", "read_only", "sunset"}
    if not checker.mapping(raw, path, allowed=allowed, required={"name"}):
        return None
    ok = checker.name(raw.get("name"), f"{path}.name")
    prefix, pattern = raw.get("prefix", ""), raw.get("pattern", "")
    if bool(prefix) == bool(pattern):
        checker.fail(path, "needs exactly one of 'prefix' or 'pattern'")
        ok = False
    if prefix and (not isinstance(prefix, str) or not _PATH_PREFIX.match(prefix)):
        checker.fail(f"{path}.prefix", f"{prefix!r} must be a URL path starting with '/'")
        ok = False
    if pattern:
        try:
            if not isinstance(pattern, str) or not pattern.startswith("^/"):
                raise re.error("must start with '^/'")
            re.compile(pattern)
        except re.error as exc:
            checker.fail(f"{path}.pattern", f"{pattern!r} is not an anchored regular expression ({exc})")
            ok = False
    methods = raw.get("methods", [])
    if not isinstance(methods, list):
        checker.fail(f"{path}.methods", "must be a list of HTTP methods")
        ok = False
        methods = []
    for i, method in enumerate(methods):
        if method not in HTTP_METHODS:
            checker.fail(
                f"{path}.methods[{i}]", f"{method!r} is not one of {', '.join(sorted(HTTP_METHODS))}"
            )
            ok = False
    exposure = raw.get("exposure", Exposure.PUBLIC.value)
    if exposure not in Exposure.values:
        checker.fail(f"{path}.exposure", f"{exposure!r} must be 'public' or 'internal'")
        ok = False
    read_only = raw.get("read_only", False)
    if not isinstance(read_only, bool):
        checker.fail(f"{path}.read_only", f"{read_only!r} must be true or false")
        ok = False
    sunset_ok, sunset = _check_sunset(raw.get("sunset"), f"{path}.sunset", checker)
    if not ok or not sunset_ok:
        return None
    return RouteSpec(
        raw["name"], prefix, pattern, list(methods), exposure, read_only=read_only, sunset=sunset
    )


def _check_slice(
    name: Any, raw: Any, path: str, backends: set[str], default: str, checker: _Checker
) -> SliceSpec | None:
    allowed = {"service", "legacy", "tables", "routes", "requires", *_SLICE_SECTIONS}
    name_ok = checker.name(name, path)
    if not checker.mapping(raw, path, allowed=allowed, required={"service", "routes"}) or not name_ok:
        return None
    ok = True
    for key in ("service", "legacy"):
        ref = raw.get(key, default if key == "legacy" else None)
        if ref is not None and ref not in backends:
            checker.fail(f"{path}.{key}", f"{ref!r} is not a backend declared under 'backends'")
            ok = False
    if raw.get("service") is not None and raw.get("service") == raw.get("legacy", default):
        checker.fail(f"{path}.service", "must differ from the legacy backend")
        ok = False
    tables = raw.get("tables", [])
    if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
        checker.fail(f"{path}.tables", "must be a list of table names")
        ok = False
    requires = raw.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        checker.fail(f"{path}.requires", "must be a list of slice names")
        ok = False
    routes_raw = raw.get("routes")
    routes: list[RouteSpec] = []
    if not isinstance(routes_raw, list) or not routes_raw:
        if "routes" in raw:
            checker.fail(f"{path}.routes", "must be a non-empty list of routes")
        ok = False
    else:
        seen: set[str] = set()
        for i, route_raw in enumerate(routes_raw):
            route = _check_route(route_raw, f"{path}.routes[{i}]", checker)
            if route is None:
                ok = False
                continue
            if route.name in seen:
                checker.fail(f"{path}.routes[{i}].name", f"{route.name!r} is used twice in this slice")
                ok = False
            seen.add(route.name)
            routes.append(route)
    settings: dict[str, Any] = {}
    for section, fields in _SLICE_SECTIONS.items():
        if section not in raw:
            continue
        section_path = f"{path}.{section}"
        if not checker.mapping(raw[section], section_path, allowed=set(fields)):
            ok = False
            continue
        for key, value in raw[section].items():
            if key not in fields:
                continue
            model_field, expected, rule = fields[key]
            if _check_setting(value, f"{section_path}.{key}", expected, rule, checker):
                settings[model_field] = value
            else:
                ok = False
    if not ok:
        return None
    return SliceSpec(
        name, raw["service"], raw.get("legacy", default), list(tables), routes, settings, list(requires)
    )


def plan_parse(text: str, *, source: str = "plan") -> Plan:
    """Parses and validates plan text; raises PlanError naming every bad field by its path."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanError([f"{source}: is not valid YAML or JSON ({exc})"]) from exc
    checker = _Checker()
    allowed = {"version", "default_backend", "default_exposure", "backends", "slices"}
    if not checker.mapping(raw, "plan", allowed=allowed, required={"version", "backends", "default_backend"}):
        raise PlanError(checker.problems)
    if raw.get("version") != 1:
        checker.fail("plan.version", f"{raw.get('version')!r} is not a supported version (use 1)")
    backends: list[BackendSpec] = []
    backends_raw = raw.get("backends") or {}
    if not isinstance(backends_raw, dict) or not backends_raw:
        checker.fail("plan.backends", "must be a non-empty mapping of backend name to its settings")
        backends_raw = {}
    for name, spec in backends_raw.items():
        path = f"plan.backends.{name}"
        name_ok = checker.name(name, path)
        if not checker.mapping(spec, path, allowed={"urls", "health_path"}, required={"urls"}) or not name_ok:
            continue
        urls_raw = spec.get("urls")
        if not isinstance(urls_raw, list) or not urls_raw:
            checker.fail(f"{path}.urls", "must be a non-empty list of http://host:port URLs")
            continue
        urls = [_check_url(u, f"{path}.urls[{i}]", checker) for i, u in enumerate(urls_raw)]
        health = spec.get("health_path", "/healthz")
        if not isinstance(health, str) or not health.startswith("/"):
            checker.fail(f"{path}.health_path", f"{health!r} must be a path starting with '/'")
            continue
        if all(urls):
            backends.append(BackendSpec(name, [u for u in urls if u], health))
    names = set(backends_raw) if isinstance(backends_raw, dict) else set()
    default = raw.get("default_backend")
    if default not in names:
        checker.fail("plan.default_backend", f"{default!r} is not a backend declared under 'backends'")
    default_exposure = raw.get("default_exposure", Exposure.PUBLIC.value)
    if default_exposure not in Exposure.values:
        checker.fail("plan.default_exposure", f"{default_exposure!r} must be 'public' or 'internal'")
    slices: list[SliceSpec] = []
    slices_raw = raw.get("slices") or {}
    if not isinstance(slices_raw, dict):
        checker.fail("plan.slices", "must be a mapping of slice name to its settings")
        slices_raw = {}
    for name, spec in slices_raw.items():
        parsed = _check_slice(name, spec, f"plan.slices.{name}", names, default, checker)
        if parsed is not None:
            slices.append(parsed)
    _check_overlaps(slices, checker)
    _check_requires(slices, set(slices_raw), checker)
    if checker.problems:
        raise PlanError(checker.problems)
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    return Plan(default, default_exposure, backends, slices, digest)


def _check_overlaps(slices: list[SliceSpec], checker: _Checker) -> None:
    """Two routes with the same prefix and a shared method would make the owner ambiguous."""
    owners: dict[tuple[str, str], str] = {}
    for slice_spec in slices:
        for i, route in enumerate(slice_spec.routes):
            key_path = route.prefix or route.pattern
            for method in route.methods or sorted(HTTP_METHODS):
                owner = owners.get((key_path, method))
                here = f"plan.slices.{slice_spec.name}.routes[{i}]"
                if owner is not None:
                    checker.fail(here, f"{method} {key_path} is already routed by {owner}")
                    break
                owners[(key_path, method)] = here


def _check_requires(slices: list[SliceSpec], declared: set[str], checker: _Checker) -> None:
    """Each required slice exists, is another slice, and no chain of requirements comes back to its
    start (such slices could never be cut over)."""
    graph = {s.name: s.requires for s in slices}
    for slice_spec in slices:
        for i, required in enumerate(slice_spec.requires):
            here = f"plan.slices.{slice_spec.name}.requires[{i}]"
            if required == slice_spec.name:
                checker.fail(here, "a slice cannot require itself")
            elif required not in declared:
                checker.fail(here, f"{required!r} is not a slice of this plan")
    for start in graph:
        # Depth-first from each slice; a cycle is reported once, from the first slice of the plan on it.
        seen = {start}
        stack = [[start]]
        while stack:
            path = stack.pop()
            for required in graph.get(path[-1], []):
                if required == start and len(path) > 1:  # a slice naming itself is reported above
                    checker.fail(
                        f"plan.slices.{start}.requires",
                        "requirements form a cycle: " + " -> ".join([*path, start]),
                    )
                    return
                if required not in seen and required in graph:
                    seen.add(required)
                    stack.append([*path, required])


def plan_load_file(path: str | Path) -> Plan:
    file_path = Path(path)
    if not file_path.is_file():
        raise PlanError([f"{path}: no such file"])
    return plan_parse(file_path.read_text(), source=str(path))
