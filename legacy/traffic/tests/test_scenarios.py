"""The virtual users' choices: the mix, what counts as an error, and confirming each order once."""

import json
import random
from collections import Counter

import pytest

from legacy.traffic.scenarios import PlannedRequest, ProductChoice, Scenario, TrafficData, parse_mix


def data(**overrides: object) -> TrafficData:
    values: dict = {
        "products": [ProductChoice("TBL-0001", ("lacquer", "oiled")), ProductChoice("CHR-0002", ())],
        "customer_tokens": ["token-a", "token-b"],
        "customer_orders": [("token-a", "6f1c0c5e-0000-4000-8000-000000000001")],
        "placed_order_ids": [11, 12],
        "production_order_ids": [7],
        "staff_token": "staff",
        "api_keys": ["key"],
    }
    values.update(overrides)
    return TrafficData(**values)


def test_mix_is_normalised_and_missing_roles_get_nothing() -> None:
    assert parse_mix("customer=8,staff=1,external=1") == {"customer": 0.8, "staff": 0.1, "external": 0.1}
    assert parse_mix("customer=1") == {"customer": 1.0, "staff": 0.0, "external": 0.0}


@pytest.mark.parametrize("text", ["robots=1", "customer=x", "customer=-1", "customer=0", ""])
def test_mix_refuses_what_it_cannot_use(text: str) -> None:
    with pytest.raises(ValueError):
        parse_mix(text)


def test_only_roles_in_the_mix_are_drawn() -> None:
    scenario = Scenario(data=data(), mix=parse_mix("customer=1"), rng=random.Random(1))
    roles = Counter(scenario.next_request().role for _ in range(500))
    assert set(roles) == {"customer"}


def test_draws_follow_the_mix() -> None:
    scenario = Scenario(data=data(), mix=parse_mix("customer=3,external=1"), rng=random.Random(2))
    roles = Counter(scenario.next_request().role for _ in range(4000))
    assert 0.70 < roles["customer"] / 4000 < 0.80


def test_each_placed_order_is_confirmed_once_then_the_staff_lists_again() -> None:
    scenario = Scenario(data=data(), mix=parse_mix("staff=1"), rng=random.Random(3))
    confirms = [scenario.staff_order_confirm() for _ in range(3)]
    assert sorted(r.path for r in confirms[:2]) == [
        "/crm/api/orders/11/confirm/",
        "/crm/api/orders/12/confirm/",
    ]
    assert confirms[2].route == "GET /crm/api/orders/"
    listed = {"results": [{"id": 11, "status": "placed"}, {"id": 13, "status": "placed"}]}
    assert confirms[2].absorb is not None
    confirms[2].absorb(200, json.dumps(listed).encode())
    assert scenario.staff_order_confirm().path == "/crm/api/orders/13/confirm/"


def test_a_placed_order_becomes_one_the_customer_can_show() -> None:
    scenario = Scenario(data=data(customer_orders=[]), mix=parse_mix("customer=1"), rng=random.Random(4))
    assert scenario.order_show().route == "GET /shop/api/orders/"
    place = scenario.order_place()
    assert place.absorb is not None and place.body is not None
    assert all(line["sku"] in {"TBL-0001", "CHR-0002"} for line in json.loads(place.body)["lines"])
    place.absorb(201, json.dumps({"id": "6f1c0c5e-0000-4000-8000-000000000009"}).encode())
    shown = scenario.order_show()
    assert shown.path == "/shop/api/orders/6f1c0c5e-0000-4000-8000-000000000009/"
    assert shown.headers["Authorization"] == place.headers["Authorization"]


def test_errors_are_classified_by_what_the_request_expects() -> None:
    place = PlannedRequest("customer", "POST /x/", "POST", "/x/", {}, expected=frozenset({201}))
    assert place.classify(201, b"") is None
    assert place.classify(200, b"") == "unexpected_status"
    assert place.classify(404, b"") == "unexpected_4xx"
    assert place.classify(503, b"") == "5xx"
    confirm = PlannedRequest(
        "staff", "POST /c/", "POST", "/c/", {}, tolerated_codes=frozenset({"invalid_transition"})
    )
    assert confirm.classify(422, b'{"error": {"code": "invalid_transition"}}') is None
    assert confirm.classify(422, b'{"error": {"code": "not_found"}}') == "unexpected_4xx"
    assert confirm.classify(422, b"not json") == "unexpected_4xx"


def test_browsing_is_anonymous_unless_customers_browse_signed_in() -> None:
    browse = ("product_list", "product_show", "catalogue_page")
    anonymous = Scenario(data=data(), mix=parse_mix("customer=1"), rng=random.Random(4))
    assert [getattr(anonymous, action)().headers for action in browse] == [{}, {}, {}]
    signed_in = Scenario(
        data=data(), mix=parse_mix("customer=1"), rng=random.Random(4), signed_in_browsing=True
    )
    seen = {getattr(signed_in, action)().headers["Authorization"] for action in browse * 20}
    assert seen == {"Bearer token-a", "Bearer token-b"}
    # The route templates the summary groups by stay the same.
    assert [getattr(signed_in, a)().route for a in browse] == [getattr(anonymous, a)().route for a in browse]
