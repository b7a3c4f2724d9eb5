"""manage.py traffic: customer, staff and external MES API traffic against a base URL."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from legacy.traffic.credentials import NoTrafficData
from legacy.traffic.report import summary_table
from legacy.traffic.scenarios import DEFAULT_MIX, parse_mix
from legacy.traffic.services import TrafficPlan, traffic_generate


class Command(BaseCommand):
    help = (
        "Send realistic traffic to a running system for a while, then print per-route counts, "
        "statuses, errors and latency percentiles (p50/p90/p99/max). Customers list and show "
        "products, open the HTML catalogue, place orders, list and show their orders; staff list "
        "placed orders and confirm them through the CRM API; partners ask the MES API for quotes "
        "and production orders. Requests arrive at a fixed rate whatever the answers take (open "
        "loop); latency counts from when a request was due. Credentials come from this command's "
        "database, which must be the target's: customer tokens, a 'traffic-generator' staff user "
        "(created once) and MES API keys issued for the run and deleted after it. Exits non-zero "
        "when any request failed unexpectedly: a 5xx, a connection error or timeout, or a 4xx "
        "the action does not expect."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000")
        parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
        parser.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
        parser.add_argument(
            "--mix",
            default=",".join(f"{role}={share:g}" for role, share in DEFAULT_MIX.items()),
            help="relative weights of the roles, e.g. customer=8,staff=1,external=1",
        )
        parser.add_argument(
            "--concurrency", type=int, default=100, help="most requests in flight at once (default 100)"
        )
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a request fails")
        parser.add_argument(
            "--closed-loop",
            type=int,
            default=0,
            metavar="USERS",
            help="instead of a rate: USERS users each sending as soon as their last answer came",
        )
        parser.add_argument("--random-seed", type=int, default=None, help="repeat the same request sequence")
        parser.add_argument(
            "--signed-in-browsing",
            action="store_true",
            help="customers send their token with catalogue requests too (product list and page, HTML "
            "catalogue; the monolith ignores it there). Use it through a strangler proxy: its canary "
            "cohorts are keyed by customer, and without a token all browsing from this generator "
            "shares one key, its address, so it lands in one cohort",
        )
        parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            mix = parse_mix(options["mix"])
        except ValueError as exc:
            raise CommandError(f"--mix: {exc}.") from exc
        if options["rate"] <= 0 or options["duration"] <= 0 or options["concurrency"] < 1:
            raise CommandError("--rate and --duration must be positive and --concurrency at least 1.")
        plan = TrafficPlan(
            base_url=options["base_url"],
            duration=options["duration"],
            rate=options["rate"],
            mix=mix,
            concurrency=options["concurrency"],
            timeout=options["timeout"],
            random_seed=options["random_seed"],
            closed_loop_users=options["closed_loop"],
            signed_in_browsing=options["signed_in_browsing"],
        )
        try:
            summary = traffic_generate(plan=plan)
        except NoTrafficData as exc:
            raise CommandError(f"Nothing to drive traffic with: {exc}. Run `manage.py seed` first.") from exc
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict(), separators=(",", ":")))
        else:
            self.stdout.write(summary_table(summary))
        if not summary.ok:
            raise CommandError(
                f"{summary.errors} of {summary.requests} requests failed unexpectedly "
                f"against {plan.base_url} (see the error samples)."
                if summary.requests
                else "No request was sent."
            )
