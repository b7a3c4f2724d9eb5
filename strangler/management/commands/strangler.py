"""`manage.py strangler ...`: operate the strangler proxy's control plane and run its data plane.

Read: slices, slice NAME, routes, audit, shadow-report. Change (each with --dry-run and --why):
load-plan, weight, shadow, pause, resume, promote, rollback, freeze, unfreeze. Also validate-plan,
export-nginx, override-token (a signed tester override), staff (a staff user's API token) and serve
(the proxy process).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from strangler import selectors, services
from strangler.models import PHASE_ORDER
from strangler.plan import PlanError, plan_load_file
from strangler.services import OperationRefused, PlanChange


def _add_change_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="Show what would change, change nothing.")
    parser.add_argument("--why", default="", help="The reason, kept in the audit log.")
    parser.add_argument("--who", default=None, help="Operator name for the audit log (default: OS user).")
    # Holds the slice lock for this long: lets a rehearsal or a test prove operators are serialised.
    parser.add_argument("--hold-lock", type=float, default=0.0, help=argparse.SUPPRESS)


class Command(BaseCommand):
    help = (
        "Operate the strangler proxy: list and show slices, routes and the audit log; load the migration "
        "plan; set canary weights; shadow on/off; pause, promote and roll back slices; freeze writes; "
        "export an nginx configuration; serve the proxy. Every change is audited and has --dry-run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("slices", help="List slices with phase, weight and shadow state.")
        sub.add_parser("backends", help="List backends with their addresses and last seen health.")
        show = sub.add_parser("slice", help="Show one slice with its routes and recent audit entries.")
        show.add_argument("name")
        routes = sub.add_parser("routes", help="List routes (of one slice with --slice).")
        routes.add_argument("--slice", dest="slice_name")
        audit = sub.add_parser("audit", help="Show the audit log, newest first.")
        audit.add_argument("--slice", dest="slice_name")
        audit.add_argument("--limit", type=int, default=30)
        report = sub.add_parser("shadow-report", help="Shadow diff rate and differing samples per route.")
        report.add_argument("--slice", dest="slice_name")
        report.add_argument("--samples", type=int, default=3)
        validate = sub.add_parser("validate-plan", help="Validate a plan file and change nothing.")
        validate.add_argument("path", nargs="?", help="default: settings.STRANGLER_PLAN_FILE")
        load = sub.add_parser("load-plan", help="Validate and apply a plan file (YAML or JSON).")
        load.add_argument("path", nargs="?", help="default: settings.STRANGLER_PLAN_FILE")
        _add_change_options(load)
        weight = sub.add_parser(
            "weight", help="Set the canary weight (percent of customers on the new backend)."
        )
        weight.add_argument("name")
        weight.add_argument("percent", help="0 to 100, up to two decimals")
        _add_change_options(weight)
        shadow = sub.add_parser("shadow", help="Turn shadowing of sampled reads on or off.")
        shadow.add_argument("name")
        shadow.add_argument("state", choices=["on", "off"])
        shadow.add_argument("--sample-rate", type=float, default=None, help="Fraction of reads to mirror.")
        _add_change_options(shadow)
        for name, text in (
            ("pause", "Hold the slice where it is (no promotion, no weight increase)."),
            ("resume", "Lift a pause."),
        ):
            p = sub.add_parser(name, help=text)
            p.add_argument("name")
            _add_change_options(p)
        promote = sub.add_parser("promote", help="Move the slice one phase forward if its gate passes.")
        promote.add_argument("name")
        promote.add_argument("--force", action="store_true", help="Override a failing gate (needs --why).")
        _add_change_options(promote)
        rollback = sub.add_parser("rollback", help="Move the slice back one phase (or --to PHASE).")
        rollback.add_argument("name")
        rollback.add_argument("--to", choices=PHASE_ORDER, default=None)
        _add_change_options(rollback)
        freeze = sub.add_parser("freeze", help="Hold writes to the slice's routes for a bounded time.")
        freeze.add_argument("name")
        freeze.add_argument("--seconds", type=float, default=10.0)
        freeze.add_argument("--max-held", type=int, default=None, help="Held writes beyond this get 503.")
        _add_change_options(freeze)
        unfreeze = sub.add_parser(
            "unfreeze", help="Release held writes (with --flip, promote in the same step)."
        )
        unfreeze.add_argument("name")
        unfreeze.add_argument("--flip", action="store_true")
        _add_change_options(unfreeze)
        override = sub.add_parser(
            "override-token",
            help="Print a signed token an authorised tester sends as X-Strangler-Backend (or the "
            "strangler_backend cookie) to read from one backend; needs STRANGLER_OVERRIDE_SECRET.",
        )
        override.add_argument("backend", choices=["legacy", "new"])
        override.add_argument("--seconds", type=int, default=3600, help="How long the token is valid.")
        staff = sub.add_parser(
            "staff",
            help="Print the API token of a proxy staff user (created if missing, in the control database): "
            "'Authorization: Token <token>' on /_strangler/api/. Same token on every run unless --rotate.",
        )
        staff.add_argument("--name", required=True, help="The staff user's username.")
        staff.add_argument("--email", default="", help="Their email, when the user is created.")
        staff.add_argument(
            "--rotate", action="store_true", help="Replace the token (the old one stops working)."
        )
        export = sub.add_parser("export-nginx", help="Render the current routing as an nginx configuration.")
        export.add_argument("--listen", default="127.0.0.1:8080", help="host:port nginx listens on.")
        export.add_argument("--output", default="-", help="File to write, '-' for stdout.")
        export.add_argument(
            "--include-only",
            action="store_true",
            help="Only the http{} body (to include from an existing nginx.conf).",
        )
        serve = sub.add_parser("serve", help="Run the proxy process (uvicorn, uvloop, httptools).")
        serve.add_argument("--host", default="127.0.0.1")
        serve.add_argument("--port", type=int, default=8080)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        handler = getattr(self, "do_" + action.replace("-", "_"))
        try:
            handler(options)
        except OperationRefused as exc:
            raise CommandError(str(exc)) from exc
        except PlanError as exc:
            raise CommandError(str(exc)) from exc

    # reads

    def do_slices(self, options: dict[str, Any]) -> None:
        rows = selectors.slice_list()
        if not rows:
            self.stdout.write("No slices; load the plan with `manage.py strangler load-plan [FILE]`.")
        for s in rows:
            flags = " ".join(
                f
                for f, on in (
                    ("shadow", s.shadow_enabled),
                    ("paused", s.paused),
                    ("frozen", s.write_freeze_until is not None),
                )
                if on
            )
            self.stdout.write(
                f"{s.name:<20} {s.phase:<8} weight={s.canary_weight:>6}% {s.legacy_backend.name}->"
                f"{s.new_backend.name} {flags}"
            )

    def do_backends(self, options: dict[str, Any]) -> None:
        for backend in selectors.backend_list():
            # Proxies report a backend's health when it changes: checked_at is when it last changed.
            if backend.checked_at is None:
                health = "unknown (no proxy has reported it yet)"
            else:
                state = "healthy" if backend.healthy else "DOWN"
                health = f"{state} since {backend.checked_at.isoformat(timespec='seconds')}"
            self.stdout.write(f"{backend.name:<20} {' '.join(backend.base_urls)}  {health}")

    def do_slice(self, options: dict[str, Any]) -> None:
        s = selectors.slice_list().filter(name=options["name"]).first()
        if s is None:
            raise CommandError(
                f"There is no slice {options['name']!r}; `manage.py strangler slices` lists them."
            )
        self.stdout.write(
            json.dumps(
                {
                    "name": s.name,
                    **selectors.slice_state(s),
                    "legacy": s.legacy_backend.name,
                    "new": s.new_backend.name,
                    "tables": s.tables,
                },
                indent=2,
            )
        )
        self.do_routes({"slice_name": s.name})
        self.do_audit({"slice_name": s.name, "limit": 10})

    def do_routes(self, options: dict[str, Any]) -> None:
        for r in selectors.route_list(slice_name=options.get("slice_name")):
            methods = ",".join(r.methods) or "*"
            self.stdout.write(
                f"{r.slice.name:<20} {r.name:<20} {r.prefix or r.pattern:<40} {methods:<20} {r.exposure}"
            )

    def do_audit(self, options: dict[str, Any]) -> None:
        for e in selectors.audit_list(slice_name=options.get("slice_name"), limit=options.get("limit", 30)):
            self.stdout.write(
                f"{e.at.isoformat()} {e.who:<12} {e.action:<10} {e.slice_name:<16} "
                f"from={json.dumps(e.from_state)} to={json.dumps(e.to_state)} why={e.why!r} "
                f"gate={json.dumps(e.gate)}"
            )

    def do_shadow_report(self, options: dict[str, Any]) -> None:
        report = selectors.shadow_report(slice_name=options.get("slice_name"), samples=options["samples"])
        if not report:
            self.stdout.write("No shadow comparisons yet.")
        for row in report:
            rate = "n/a" if row["diff_rate"] is None else f"{row['diff_rate']:.2%}"
            self.stdout.write(
                f"{row['slice']}/{row['route']}: compared={row['compared']} differing={row['differing']} "
                f"failed={row['failed']} diff_rate={rate}"
            )
            for sample in row["samples"]:
                self.stdout.write(
                    f"    {sample['at']} {sample['method']} {sample['path']}: "
                    + "; ".join(sample["differences"][:5])
                )

    # changes

    def _who(self, options: dict[str, Any]) -> str:
        return options.get("who") or os.environ.get("STRANGLER_OPERATOR") or getpass.getuser()

    def _report(self, change: PlanChange) -> None:
        prefix = "DRY RUN, nothing changed: " if change.dry_run else ""
        what = f"{change.action} {change.slice_name}".strip()
        self.stdout.write(f"{prefix}{what}: {json.dumps(change.from_state)} -> {json.dumps(change.to_state)}")
        if change.gate:
            self.stdout.write(f"gate: {json.dumps(change.gate)}")
        if change.audit_id:
            self.stdout.write(f"audited as entry {change.audit_id}")

    def _common(self, options: dict[str, Any]) -> dict[str, Any]:
        return {"who": self._who(options), "why": options["why"], "dry_run": options["dry_run"]}

    def _plan_path(self, options: dict[str, Any]) -> str:
        return str(options["path"] or settings.STRANGLER_PLAN_FILE)

    def do_validate_plan(self, options: dict[str, Any]) -> None:
        plan = plan_load_file(self._plan_path(options))
        routes = sum(len(s.routes) for s in plan.slices)
        self.stdout.write(
            f"Plan is valid: {len(plan.backends)} backends, {len(plan.slices)} slices, {routes} routes."
        )

    def do_load_plan(self, options: dict[str, Any]) -> None:
        plan = plan_load_file(self._plan_path(options))
        self._report(services.plan_apply(plan=plan, **self._common(options)))

    def do_weight(self, options: dict[str, Any]) -> None:
        try:
            percent = Decimal(options["percent"])
        except InvalidOperation as exc:
            raise CommandError(
                f"{options['percent']!r} is not a number; give a percent such as 10 or 12.5."
            ) from exc
        self._report(
            services.slice_set_weight(
                name=options["name"],
                weight=percent,
                hold_lock_seconds=options["hold_lock"],
                **self._common(options),
            )
        )

    def do_shadow(self, options: dict[str, Any]) -> None:
        self._report(
            services.slice_set_shadow(
                name=options["name"],
                enabled=options["state"] == "on",
                sample_rate=options["sample_rate"],
                hold_lock_seconds=options["hold_lock"],
                **self._common(options),
            )
        )

    def do_pause(self, options: dict[str, Any]) -> None:
        self._report(
            services.slice_set_paused(
                name=options["name"],
                paused=True,
                hold_lock_seconds=options["hold_lock"],
                **self._common(options),
            )
        )

    def do_resume(self, options: dict[str, Any]) -> None:
        self._report(
            services.slice_set_paused(
                name=options["name"],
                paused=False,
                hold_lock_seconds=options["hold_lock"],
                **self._common(options),
            )
        )

    def do_promote(self, options: dict[str, Any]) -> None:
        self._report(
            services.slice_promote(
                name=options["name"],
                force=options["force"],
                hold_lock_seconds=options["hold_lock"],
                **self._common(options),
            )
        )

    def do_rollback(self, options: dict[str, Any]) -> None:
        self._report(
            services.slice_rollback(
                name=options["name"],
                to_phase=options["to"],
                hold_lock_seconds=options["hold_lock"],
                **self._common(options),
            )
        )

    def do_freeze(self, options: dict[str, Any]) -> None:
        self._report(
            services.write_freeze_start(
                name=options["name"],
                seconds=options["seconds"],
                max_held=options["max_held"],
                **self._common(options),
            )
        )

    def do_unfreeze(self, options: dict[str, Any]) -> None:
        self._report(
            services.write_freeze_release(
                name=options["name"], promote=options["flip"], **self._common(options)
            )
        )

    def do_override_token(self, options: dict[str, Any]) -> None:
        import time

        from django.conf import settings

        from strangler.proxy.overrides import override_token_issue

        if not settings.STRANGLER_OVERRIDE_SECRET:
            raise CommandError(
                "STRANGLER_OVERRIDE_SECRET is empty, so the proxy honours no override: set the same secret "
                "in the proxy's environment and in this command's."
            )
        token = override_token_issue(
            backend=options["backend"],
            secret=settings.STRANGLER_OVERRIDE_SECRET,
            expires_at=int(time.time()) + options["seconds"],
        )
        self.stdout.write(token)

    def do_staff(self, options: dict[str, Any]) -> None:
        from ops.staff_credentials import staff_token_ensure

        credential = staff_token_ensure(
            username=options["name"], email=options["email"], rotate=options["rotate"]
        )
        self.stdout.write(credential.token)
        state = (
            "created" if credential.created else "promoted to staff" if credential.promoted else "existing"
        )
        self.stderr.write(
            f"{credential.username} ({state}): send 'Authorization: Token <token>' to /_strangler/api/; "
            "an admin login is `SERVICE=proxy manage.py createsuperuser`."
        )

    def do_export_nginx(self, options: dict[str, Any]) -> None:
        from strangler.nginx_export import nginx_config_render

        text = nginx_config_render(
            snapshot=selectors.routing_snapshot(),
            listen=options["listen"],
            include_only=options["include_only"],
        )
        if options["output"] == "-":
            self.stdout.write(text)
        else:
            with open(options["output"], "w") as handle:
                handle.write(text)
            self.stdout.write(f"wrote {options['output']}")

    def do_serve(self, options: dict[str, Any]) -> None:
        # The proxy's own routes, apps and database are SERVICE=proxy's; under another SERVICE it
        # would answer /_strangler/ from that service's URLconf (manage.py picks proxy when unset).
        if settings.SERVICE != "proxy":
            raise CommandError(
                f"`strangler serve` runs the proxy process: run it with SERVICE=proxy (or with SERVICE "
                f"unset), not SERVICE={settings.SERVICE}."
            )
        from strangler.proxy.server import proxy_serve

        proxy_serve(host=options["host"], port=options["port"])
