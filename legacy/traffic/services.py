"""One traffic run against a base URL: credentials, working data, the run itself, clean-up."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import structlog
from django.conf import settings

from legacy.traffic.credentials import (
    traffic_api_keys_issue,
    traffic_api_keys_revoke,
    traffic_data_load,
    traffic_staff_token_ensure,
)
from legacy.traffic.pacing import keys_needed, rate_per_second
from legacy.traffic.runner import TrafficRunner
from legacy.traffic.scenarios import DEFAULT_MIX, Scenario
from legacy.traffic.stats import TrafficSummary

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TrafficPlan:
    base_url: str
    duration: float
    rate: float = 50.0  # requests per second, open loop
    mix: dict[str, float] | None = None
    concurrency: int = 100
    timeout: float = 10.0
    random_seed: int | None = None
    # Closed loop instead: this many users sending back to back (rate is then ignored).
    closed_loop_users: int = 0
    signed_in_browsing: bool = False  # see Scenario.signed_in_browsing


def traffic_generate(*, plan: TrafficPlan) -> TrafficSummary:
    """Drives customer, staff and external traffic at the target for `plan.duration` seconds.

    Reads credentials and ids from this process's database, which must be the target's.
    """
    mix = plan.mix or DEFAULT_MIX
    external_rate = plan.rate * mix.get("external", 0.0)
    names: list[str] = []
    raw_keys: list[str] = []
    try:
        if mix.get("external", 0.0) > 0:
            count = keys_needed(
                rate=external_rate, per_key_limit=rate_per_second(settings.MES_API_RATE_LIMIT)
            )
            names, raw_keys = traffic_api_keys_issue(count=count)
        staff_token = traffic_staff_token_ensure() if mix.get("staff", 0.0) > 0 else ""
        data = traffic_data_load(staff_token=staff_token, api_keys=raw_keys)
        scenario = Scenario(
            data=data,
            mix=mix,
            rng=random.Random(plan.random_seed),
            signed_in_browsing=plan.signed_in_browsing,
        )
        runner = TrafficRunner(
            base_url=plan.base_url,
            next_request=scenario.next_request,
            concurrency=plan.concurrency,
            timeout=plan.timeout,
        )
        logger.info("traffic.started", base_url=plan.base_url, rate=plan.rate, duration=plan.duration)
        if plan.closed_loop_users:
            summary = asyncio.run(runner.closed_loop(users=plan.closed_loop_users, duration=plan.duration))
        else:
            summary = asyncio.run(runner.open_loop(rate=plan.rate, duration=plan.duration))
    finally:
        if names:
            traffic_api_keys_revoke(names=names)
    logger.info("traffic.finished", requests=summary.requests, errors=summary.errors)
    return summary
