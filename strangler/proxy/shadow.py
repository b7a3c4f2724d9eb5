"""Comparison of a legacy answer with the new backend's answer to the same (mirrored) read.

Status, chosen headers and bodies are compared; JSON bodies are flattened to dotted paths
(`results.0.sku`) so noise rules can ignore generated values by glob (`results.*.id`, `*.created_at`)
under a path prefix of the request.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from typing import Any

MAX_DIFFERENCES = 20


def json_flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            flat.update(json_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        if not value:
            flat[prefix] = {}
    elif isinstance(value, list):
        for index, item in enumerate(value):
            flat.update(json_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        if not value:
            flat[prefix] = []
    else:
        flat[prefix] = value
    return flat


def ignore_rules_for(path: str, rules: dict[str, list[str]]) -> list[str]:
    return [glob for prefix, globs in rules.items() if path.startswith(prefix) for glob in globs]


def _is_json(headers: dict[str, str]) -> bool:
    return "json" in headers.get("content-type", "")


def responses_compare(
    *,
    path: str,
    legacy: tuple[int, dict[str, str], bytes],
    new: tuple[int, dict[str, str], bytes],
    compare_headers: list[str],
    ignore: dict[str, list[str]],
) -> list[str]:
    """Human-readable differences between the two responses; empty when they match under the rules."""
    (legacy_status, legacy_headers, legacy_body), (new_status, new_headers, new_body) = legacy, new
    differences: list[str] = []
    if legacy_status != new_status:
        differences.append(f"status: {legacy_status} != {new_status}")
    for header in compare_headers:
        if legacy_headers.get(header) != new_headers.get(header):
            differences.append(
                f"header {header}: {legacy_headers.get(header)!r} != {new_headers.get(header)!r}"
            )
    if _is_json(legacy_headers) and _is_json(new_headers):
        try:
            legacy_flat = json_flatten(json.loads(legacy_body))
            new_flat = json_flatten(json.loads(new_body))
        except ValueError as exc:
            differences.append(f"body: not comparable JSON ({exc})")
            return differences
        globs = ignore_rules_for(path, ignore)
        for key in sorted(legacy_flat.keys() | new_flat.keys()):
            if any(fnmatchcase(key, glob) for glob in globs):
                continue
            missing = object()
            a, b = legacy_flat.get(key, missing), new_flat.get(key, missing)
            if a != b:
                shown_a = "(missing)" if a is missing else json.dumps(a)[:80]
                shown_b = "(missing)" if b is missing else json.dumps(b)[:80]
                differences.append(f"body.{key}: {shown_a} != {shown_b}")
                if len(differences) >= MAX_DIFFERENCES:
                    break
    elif legacy_body != new_body:
        differences.append(f"body: {len(legacy_body)} bytes != {len(new_body)} bytes")
    return differences
