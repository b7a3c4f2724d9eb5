"""Per-key rate limits of the pricing service hold across instances: two mes_pricing web processes
behind the real proxy (the pricing slice live, its backend with both URLs, picked round robin), one
key limited to N a minute: of N+k quotes through the proxy exactly N are priced, the rest answered
429 with Retry-After in the JSON error shape, and then each instance refuses the key directly too.
Failed keys are throttled per client address as in the monolith; with Redis down the limits are off
and pricing stays up."""

from __future__ import annotations

import re
import secrets
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
import yaml

from harness.proxy_plan import plan_route, plan_slice
from ops.process_group import ProcessGroup, free_port
from strangler import services
from strangler.plan import plan_parse
from tests.integration.pricing_stack import (
    PricingService,
    pricing_databases_flush,
    pricing_web_start,
    pricing_world_seed,
)
from tests.integration.proxy_stack import proxy_caught_up, proxy_start

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(databases=["default", "pricing", "control"]),
]

LIMIT = 12  # quotes a minute for the limited key
EXTRA = 8
FAILURES_PER_ADDRESS = 3
KEY_NAME = "rate-partner"
QUOTE = {"quantity": 2, "options": []}


@dataclass
class RateWorld:
    proxy_url: str
    instances: list[PricingService]
    key: str
    sku: str


def two_instance_plan(*, legacy_url: str, pricing_urls: list[str]) -> str:
    slice_ = plan_slice(
        service="mes_pricing", routes=[plan_route("quotes", "/mes/api/quotes/", methods=["POST"])]
    )
    return yaml.safe_dump(
        {
            "version": 1,
            "default_backend": "legacy",
            "backends": {"legacy": {"urls": [legacy_url]}, "mes_pricing": {"urls": pricing_urls}},
            "slices": {"pricing": slice_},
        },
        sort_keys=False,
    )


@pytest.fixture(scope="module")
def rate_world(live_env: dict[str, str], django_db_blocker: object) -> Iterator[RateWorld]:
    from mes_pricing.catalogue.models import CostProduct

    env = {
        **live_env,
        "MES_API_KEY_RATE_LIMITS": f"{KEY_NAME}={LIMIT}/min",
        "MES_API_KEY_FAILURES_PER_ADDRESS": str(FAILURES_PER_ADDRESS),
    }
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        key = pricing_world_seed(key_name=KEY_NAME, key_raw=f"rate-{secrets.token_urlsafe(24)}")
        sku = CostProduct.objects.using("pricing").filter(active=True).order_by("sku").first().sku
    with ProcessGroup() as group:
        instances = [pricing_web_start(group, env, tag=f"rate-{n}") for n in (1, 2)]
        _, proxy_url = proxy_start(group, live_env, "pricing-rate")
        with django_db_blocker.unblock():  # type: ignore[attr-defined]
            plan = two_instance_plan(
                legacy_url=f"http://127.0.0.1:{free_port()}",  # nothing there: no quote may reach it
                pricing_urls=[instance.base_url for instance in instances],
            )
            services.plan_apply(plan=plan_parse(plan), who="test")
            for _ in ("syncing", "shadow", "canary", "live"):
                services.slice_promote(name="pricing", who="test", force=True, why="test setup")
            proxy_caught_up(proxy_url)
        yield RateWorld(proxy_url=proxy_url, instances=instances, key=key, sku=sku)
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        pricing_databases_flush(("legacy", "pricing", "control"))


def quotes_served(instance: PricingService) -> int:
    """Quote requests this instance answered, from its own /metrics."""
    text = requests.get(f"{instance.base_url}/metrics", timeout=5).text
    return sum(
        int(float(value))
        for labels, value in re.findall(r"^http_requests_total\{([^}]*)\} (\S+)$", text, re.MULTILINE)
        if "quote" in labels
    )


def test_the_key_limit_holds_across_both_instances(rate_world: RateWorld) -> None:
    body = {"sku": rate_world.sku, **QUOTE}

    def quote(_: int) -> requests.Response:
        return requests.post(
            f"{rate_world.proxy_url}/mes/api/quotes/",
            json=body,
            headers={"X-API-Key": rate_world.key},
            timeout=10,
        )

    before = [quotes_served(instance) for instance in rate_world.instances]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(quote, range(LIMIT + EXTRA)))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: LIMIT, 429: EXTRA}, statuses
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    served = [quotes_served(instance) - b for instance, b in zip(rate_world.instances, before, strict=True)]
    assert all(served) and sum(served) == LIMIT + EXTRA, served  # both instances took their share
    for instance in rate_world.instances:  # the count is shared: neither instance has quota left
        direct = requests.post(
            f"{instance.base_url}/pricing/api/v1/quotes/",
            json=body,
            headers={"X-API-Key": rate_world.key},
            timeout=10,
        )
        assert direct.status_code == 429 and int(direct.headers["Retry-After"]) >= 1


def test_wrong_keys_are_throttled_per_address_across_instances(rate_world: RateWorld) -> None:
    """As in the monolith: past the bound of failures, the address is refused whatever key it sends."""
    address = f"203.0.113.{secrets.randbelow(250) + 1}"  # the client behind a trusted proxy
    body = {"sku": rate_world.sku, **QUOTE}
    answers = []
    for attempt in range(FAILURES_PER_ADDRESS):
        instance = rate_world.instances[attempt % 2]
        answers.append(
            requests.post(
                f"{instance.base_url}/mes/api/quotes/",
                json=body,
                headers={"X-API-Key": f"wrong-{secrets.token_hex(8)}", "X-Forwarded-For": address},
                timeout=10,
            ).status_code
        )
    assert answers == [401] * FAILURES_PER_ADDRESS
    refused = requests.post(
        f"{rate_world.instances[1].base_url}/mes/api/quotes/",
        json=body,
        headers={"X-API-Key": f"wrong-{secrets.token_hex(8)}", "X-Forwarded-For": address},
        timeout=10,
    )
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


@pytest.fixture(scope="module")
def pricing_without_redis(live_env: dict[str, str], rate_world: RateWorld) -> Iterator[PricingService]:
    """A pricing instance whose Redis is a closed port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    env = {
        **live_env,
        "REDIS_URL": f"redis://127.0.0.1:{dead}/0",
        "MES_API_KEY_RATE_LIMITS": f"{KEY_NAME}=2/min",
    }
    with ProcessGroup() as group:
        yield pricing_web_start(group, env, tag="no-redis")


def test_redis_down_turns_limits_off_and_pricing_stays_up(
    rate_world: RateWorld, pricing_without_redis: PricingService
) -> None:
    body = {"sku": rate_world.sku, **QUOTE}
    started = time.monotonic()
    statuses = [
        requests.post(
            f"{pricing_without_redis.base_url}/pricing/api/v1/quotes/",
            json=body,
            headers={"X-API-Key": rate_world.key},
            timeout=10,
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [200] * 5  # over the key's 2/min: no limit without Redis
    assert time.monotonic() - started < 10
    log = pricing_without_redis.web.log_tail(200)
    assert "pricing.rate_limit_off" in log, log
