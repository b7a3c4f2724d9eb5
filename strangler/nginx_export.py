"""Renders the current routing as an nginx configuration, for running nginx as the data plane at scale.

Exported: prefix routes with method routing (including fall-through to shorter prefixes and the default
backend, decided by the same matcher the proxy uses), internal exposure, the weighted sticky canary
(nginx's `split_clients` uses the same MurmurHash2 and thresholds as strangler.proxy.cohort, so every
customer lands on the same side), tester overrides, forwarding headers set by the proxy, the body limit,
and sampled mirroring of reads for slices with shadow on (nginx mirrors; it does not compare), and
410 Gone for routes past their sunset at export time (export again when a sunset passes).
Not exported: read-your-writes pins, the write freeze and automatic rollback, which need the proxy's
state; regex routes restricted to some methods (nginx cannot fall through from a regex location).
"""

from __future__ import annotations

import json
import re
import time
from email.utils import formatdate

from django.conf import settings

from strangler.models import Exposure, Phase
from strangler.plan import HTTP_METHODS
from strangler.proxy.routing import SAFE_METHODS, RouteRuntime, RoutingTable
from strangler.routing_snapshot import RoutingSnapshot

_METHODS = sorted(HTTP_METHODS)
_SAFE = "|".join(sorted(SAFE_METHODS))
# Phases whose reads the new backend answers alone, and phases whose reads either side may answer.
_NEW_ANSWERS = (Phase.LIVE, Phase.RETIRED)
_BOTH_ANSWER = (Phase.SHADOW, Phase.CANARY)


# The proxy has four cookies of its own (strangler/proxy/header_policy.py); nginx drops that many.
_OWN_COOKIES_MAX = 4


class ExportError(Exception):
    """The routing uses something nginx cannot express; the message says what."""


def _upstream(name: str) -> str:
    return "strangler_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _var(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _target(route: RouteRuntime, method: str, table: RoutingTable) -> str:
    """The upstream (or variable holding it) for requests of `method` that match `route`."""
    slice_ = route.slice
    if slice_ is None:
        assert table.default_backend is not None
        return _upstream(table.default_backend.name)
    if slice_.phase in _NEW_ANSWERS:
        return _upstream(slice_.new.name)
    if slice_.phase in _BOTH_ANSWER and method in SAFE_METHODS:
        return f"$strangler_target_{_var(slice_.name)}"
    return _upstream(slice_.legacy.name)


def nginx_config_render(
    *, snapshot: RoutingSnapshot, listen: str, include_only: bool = False, now: float | None = None
) -> str:
    """`now` (epoch seconds) decides which routes are past their sunset: nginx does not watch the
    clock, so the configuration is exported again when a sunset passes."""
    now = time.time() if now is None else now
    table = RoutingTable(snapshot)
    if table.default_backend is None:
        raise ExportError("The routing has no default backend; load a plan first.")
    for route in table.patterns:
        if route.methods:
            raise ExportError(
                f"Route {route.name!r} is a pattern limited to {sorted(route.methods)}; nginx cannot fall "
                "through from a regex location by method. Drop the method list or use a prefix."
            )
    out: list[str] = []
    emit = out.append
    emit(f"# Rendered by `manage.py strangler export-nginx` from routing version {table.version}.")
    emit("# Not exported (need the proxy's state): read-your-writes pins, write freeze, automatic rollback.")
    backends: dict[str, list[tuple[str, int]]] = {table.default_backend.name: table.default_backend.addresses}
    for slice_ in table.slices.values():
        backends[slice_.legacy.name] = slice_.legacy.addresses
        backends[slice_.new.name] = slice_.new.addresses
    for name, addresses in sorted(backends.items()):
        emit(f"upstream {_upstream(name)} {{")
        for host, port in addresses:
            emit(f"    server {host}:{port} max_fails=0;")
        emit("    keepalive 64;")
        emit("}")
    # The customer key and tester override, byte for byte as strangler.proxy.app computes them.
    raw_key = '"$http_authorization$http_x_api_key$cookie_sessionid"'
    emit(f"map {raw_key} $strangler_key {{")
    emit('    "" $remote_addr;')
    emit(f"    default {raw_key};")
    emit("}")
    # Tester overrides are HMAC-signed tokens (strangler/proxy/overrides.py) that nginx cannot check:
    # it honours none, as the proxy honours none it cannot verify; testers use the proxy.
    emit("map $http_x_strangler_backend $strangler_override {")
    emit('    default "";')
    emit("}")
    # The proxy's own cookies (its admin's session and CSRF token, the override, the pin: all named
    # strangler_*, which HeaderPolicy enforces) never reach a backend. One map drops one of them, so
    # the chain drops up to _OWN_COOKIES_MAX, then a leading "; " left by dropping the first cookie.
    previous = "$http_cookie"
    for index in range(_OWN_COOKIES_MAX):
        emit(f"map {previous} $strangler_cookie_{index} {{")
        emit('    "~^(?<before>.*?)(?:^|;\\s*)strangler_[^;]*(?<after>.*)$" "$before$after";')
        emit(f"    default {previous};")
        emit("}")
        previous = f"$strangler_cookie_{index}"
    emit(f"map {previous} $strangler_cookie {{")
    emit('    "~^;\\s*(?<rest>.*)$" $rest;')
    emit(f"    default {previous};")
    emit("}")
    networks = settings.STRANGLER_INTERNAL_NETWORKS
    emit("geo $strangler_internal_net {")
    emit("    default 0;")
    for network in networks:
        emit(f"    {network} 1;")
    emit("}")
    token = settings.STRANGLER_INTERNAL_TOKEN
    emit("map $http_x_strangler_internal_token $strangler_token_ok {")
    emit("    default 0;")
    if token:
        emit(f"    {_quote(token)} 1;")
    emit("}")
    emit('map "$strangler_internal_net$strangler_token_ok" $strangler_insider {')
    emit("    default 1;")
    emit('    "00" 0;')
    emit("}")
    for slice_ in table.slices.values():
        name = _var(slice_.name)
        if slice_.phase not in _BOTH_ANSWER:
            continue
        cohort = ""
        if slice_.phase == Phase.CANARY and slice_.weight >= 100:
            cohort = "new"
        elif slice_.phase == Phase.CANARY and slice_.weight > 0:
            emit(f'split_clients "$strangler_key" $strangler_cohort_{name} {{')
            emit(f"    {slice_.weight:.2f}% new;")
            emit("    * legacy;")
            emit("}")
            cohort = f"$strangler_cohort_{name}"
        new, legacy = _upstream(slice_.new.name), _upstream(slice_.legacy.name)
        emit(f'map "$request_method:$strangler_override:{cohort}" $strangler_target_{name} {{')
        emit(f'    "~^({_SAFE}):new:" {new};')
        emit(f'    "~^({_SAFE}):legacy:" {legacy};')
        emit(f'    "~^({_SAFE}):[^:]*:new$" {new};')
        emit(f"    default {legacy};")
        emit("}")
        if slice_.shadow_enabled:
            emit(f'split_clients "$request_id" $strangler_sample_{name} {{')
            emit(f"    {min(slice_.shadow_sample_rate, 1.0) * 100:.2f}% 1;")
            emit("    * 0;")
            emit("}")
    # (location, label, route per method in _METHODS, route for any other method)
    locations: list[tuple[str, str, list[RouteRuntime], RouteRuntime]] = []
    prefixes = [prefix for prefix, _ in table.prefixes]
    if "/" not in prefixes:
        prefixes.append("/")
    prefix_table = RoutingTable(snapshot)
    prefix_table.patterns = []
    for route in table.patterns:
        assert route.pattern is not None
        locations.append((f"~ {_quote(route.pattern.pattern)}", route.name, [route] * len(_METHODS), route))
    for prefix in prefixes:
        routes = [prefix_table._match(method, prefix) for method in _METHODS]
        locations.append((prefix, prefix, routes, prefix_table._match("TRACE", prefix)))
    emit("server {")
    emit(f"    listen {listen};")
    emit(f"    client_max_body_size {settings.STRANGLER_MAX_BODY_BYTES};")
    emit("    proxy_http_version 1.1;")
    emit('    proxy_set_header Connection "";')
    emit("    proxy_set_header Host $http_host;")
    emit("    proxy_set_header X-Forwarded-For $remote_addr;")
    emit("    proxy_set_header X-Forwarded-Proto $scheme;")
    emit("    proxy_set_header X-Forwarded-Host $http_host;")
    emit('    proxy_set_header Forwarded "";')
    emit('    proxy_set_header X-Real-IP "";')
    emit("    proxy_set_header X-Request-ID $request_id;")
    emit("    proxy_set_header Cookie $strangler_cookie;")
    emit('    proxy_set_header X-Strangler-Backend "";')
    emit('    proxy_set_header X-Strangler-Internal-Token "";')
    emit(f"    proxy_connect_timeout {int(settings.STRANGLER_CONNECT_TIMEOUT * 1000)}ms;")
    emit(f"    proxy_read_timeout {int(settings.STRANGLER_READ_TIMEOUT * 1000)}ms;")
    emit("    proxy_next_upstream error timeout;")
    emit("    add_header X-Request-ID $request_id always;")
    for index, (location, label, routes, other) in enumerate(locations):
        var = f"$strangler_location_{index}"
        refuse = f"$strangler_refuse_{index}"
        targets = {m: _target(r, m, table) for m, r in zip(_METHODS, routes, strict=True)}
        internal = [m for m, r in zip(_METHODS, routes, strict=True) if r.exposure == Exposure.INTERNAL]
        gone = [m for m, r in zip(_METHODS, routes, strict=True) if r.sunset is not None and r.sunset <= now]
        maps = [f"map $request_method {var} {{"]
        for method, target in targets.items():
            maps.append(f"    {method} {target};")
        maps.append(f"    default {_target(other, 'TRACE', table)};")
        maps.append("}")
        if internal:
            methods = "|".join(internal)
            maps.append(f'map "$request_method:$strangler_insider" {refuse} {{')
            maps.append(f'    "~^({methods}):0$" 1;')
            maps.append("    default 0;")
            maps.append("}")
        if gone:
            maps.append(f"map $request_method $strangler_gone_{index} {{")
            maps.append(f'    "~^({"|".join(gone)})$" 1;')
            maps.append("    default 0;")
            maps.append("}")
        server_at = out.index("server {")
        out[server_at:server_at] = maps
        emit(f"    location {location} {{  # {label}")
        if gone:
            sunset = formatdate(
                next(r.sunset for r in routes if r.sunset is not None and r.sunset <= now), usegmt=True
            )
            body = json.dumps(
                {
                    "error": {
                        "code": "gone",
                        "message": f"This path was retired on {sunset}.",
                        "details": {"sunset": sunset},
                    }
                }
            )
            # `return` answers with default_type ("add_header Content-Type" would add a second one).
            emit("        default_type application/json;")
            emit(f"        if ($strangler_gone_{index}) {{")
            emit(f'            add_header Sunset "{sunset}" always;')
            emit(f"            return 410 '{body}';")
            emit("        }")
        if internal:
            emit(f"        if ({refuse}) {{")
            emit("            add_header Content-Type application/json always;")
            emit(
                '            return 403 \'{"error": {"code": "internal_route", '
                '"message": "This path is not available from outside."}}\';'
            )
            emit("        }")
        read_route = routes[_METHODS.index("GET")]
        mirrored = (
            read_route.slice is not None
            and read_route.slice.shadow_enabled
            and read_route.slice.phase in _BOTH_ANSWER
        )
        if mirrored:
            assert read_route.slice is not None
            emit(f"        mirror /_strangler_mirror/{_var(read_route.slice.name)};")
        emit(f"        proxy_pass http://{var};")
        emit("    }")
    for slice_ in table.slices.values():
        if slice_.shadow_enabled and slice_.phase in _BOTH_ANSWER:
            name = _var(slice_.name)
            emit(f"    location = /_strangler_mirror/{name} {{")
            emit("        internal;")
            emit(f'        if ($request_method !~ "^({_SAFE})$") {{ return 204; }}')
            emit(f'        if ($strangler_sample_{name} = "0") {{ return 204; }}')
            emit(f"        proxy_pass http://{_upstream(slice_.new.name)}$request_uri;")
            emit("    }")
    emit("}")
    body = "\n".join(out) + "\n"
    if include_only:
        return body
    indented = "\n".join(("    " + line) if line else line for line in body.splitlines())
    return (
        "worker_processes 1;\n"
        "error_log stderr warn;\n"
        "pid nginx.pid;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n"
        "    client_body_temp_path tmp/body;\n"
        "    proxy_temp_path tmp/proxy;\n"
        "    fastcgi_temp_path tmp/fastcgi;\n"
        "    uwsgi_temp_path tmp/uwsgi;\n"
        "    scgi_temp_path tmp/scgi;\n"
        f"{indented}\n"
        "}\n"
    )
