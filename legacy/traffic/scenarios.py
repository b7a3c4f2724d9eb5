"""What the virtual users do: customers browse and order, staff confirm, partners use the MES API.

Pure logic (no I/O): a Scenario draws the next request from the mix and learns from the answers
(ids of new orders, placed orders to confirm), so a run follows real paths through the system.
Routes are named by template (`GET /shop/api/orders/{id}/`) so results group per route.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

ROLES = ("customer", "staff", "external")
DEFAULT_MIX = {"customer": 0.85, "staff": 0.05, "external": 0.10}
# Caps on what the scenario remembers, so a long run holds bounded memory.
POOL_LIMIT = 20_000


def parse_mix(text: str) -> dict[str, float]:
    """'customer=8,staff=1,external=1' -> shares that add up to 1 (missing roles get 0)."""
    weights: dict[str, float] = dict.fromkeys(ROLES, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, _, value = part.partition("=")
        role = role.strip()
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use {', '.join(ROLES)}")
        try:
            weights[role] = float(value)
        except ValueError:
            raise ValueError(f"{role}= needs a number, got {value!r}") from None
        if weights[role] < 0:
            raise ValueError(f"{role}= cannot be negative")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the mix needs at least one role with a positive weight")
    return {role: weight / total for role, weight in weights.items()}


@dataclass(frozen=True)
class ProductChoice:
    sku: str
    options: tuple[str, ...]


@dataclass
class TrafficData:
    """Everything the virtual users need from the target's database: catalogue, credentials, ids."""

    products: list[ProductChoice]
    customer_tokens: list[str]
    customer_orders: list[tuple[str, str]]  # (customer token, order public id)
    placed_order_ids: list[int]
    production_order_ids: list[int]
    staff_token: str
    api_keys: list[str]


@dataclass(frozen=True)
class PlannedRequest:
    role: str
    route: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None
    expected: frozenset[int] = frozenset({200})
    # Error codes ({"error": {"code": ...}}) that a 4xx may carry without counting as an error.
    tolerated_codes: frozenset[str] = frozenset()
    absorb: Callable[[int, bytes], None] | None = None

    def classify(self, status: int, body: bytes) -> str | None:
        """None when the answer is one this request may get, else the kind of error."""
        if status in self.expected:
            return None
        if 400 <= status < 500 and self.tolerated_codes and error_code(body) in self.tolerated_codes:
            return None
        if status >= 500:
            return "5xx"
        if 400 <= status < 500:
            return "unexpected_4xx"
        return "unexpected_status"


def error_code(body: bytes) -> str | None:
    """The code of an error answer ({"error": {"code": ...}}), None for any other body."""
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


JSON = {"Content-Type": "application/json"}


@dataclass
class Scenario:
    data: TrafficData
    mix: dict[str, float]
    rng: random.Random = field(default_factory=random.Random)
    # Customers send their token with catalogue requests too (the views ignore it). A proxy that puts
    # customers into canary cohorts by key then spreads browsing over the cohorts; without it every
    # anonymous request from this generator shares one key (its address) and so one cohort.
    signed_in_browsing: bool = False
    # Orders this run has asked to confirm; never asked twice.
    claimed: set[int] = field(default_factory=set)
    _known_production: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.data.products or not self.data.customer_tokens:
            raise ValueError("the target has no products or no customers")
        actions: dict[str, list[tuple[Callable[[], PlannedRequest], float]]] = {
            "customer": [
                (self.product_list, 20),
                (self.product_show, 25),
                (self.order_list, 15),
                (self.order_show, 15),
                (self.order_place, 10),
                (self.catalogue_page, 15),
            ],
            "staff": [(self.staff_order_list, 40), (self.staff_order_confirm, 60)],
            "external": [(self.quote, 60), (self.production_list, 20), (self.production_show, 20)],
        }
        self._choices: list[Callable[[], PlannedRequest]] = []
        weights: list[float] = []
        for role, share in self.mix.items():
            role_total = sum(weight for _, weight in actions[role])
            for action, weight in actions[role]:
                if share > 0:
                    self._choices.append(action)
                    weights.append(share * weight / role_total)
        self._cumulative = list(_accumulate(weights))
        self._known_production.update(self.data.production_order_ids)

    def next_request(self) -> PlannedRequest:
        return self.rng.choices(self._choices, cum_weights=self._cumulative)[0]()

    # customers -------------------------------------------------------------------------------
    def _customer(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.rng.choice(self.data.customer_tokens)}"}

    def _browsing(self) -> dict[str, str]:
        return self._customer() if self.signed_in_browsing else {}

    def product_list(self) -> PlannedRequest:
        return PlannedRequest(
            "customer", "GET /shop/api/products/", "GET", "/shop/api/products/", self._browsing()
        )

    def product_show(self) -> PlannedRequest:
        sku = self.rng.choice(self.data.products).sku
        return PlannedRequest(
            "customer",
            "GET /shop/api/products/{sku}/",
            "GET",
            f"/shop/api/products/{sku}/",
            self._browsing(),
        )

    def catalogue_page(self) -> PlannedRequest:
        return PlannedRequest("customer", "GET /shop/", "GET", "/shop/", self._browsing())

    def order_list(self) -> PlannedRequest:
        return PlannedRequest(
            "customer", "GET /shop/api/orders/", "GET", "/shop/api/orders/", self._customer()
        )

    def order_show(self) -> PlannedRequest:
        if not self.data.customer_orders:
            return self.order_list()
        token, public_id = self.rng.choice(self.data.customer_orders)
        return PlannedRequest(
            "customer",
            "GET /shop/api/orders/{id}/",
            "GET",
            f"/shop/api/orders/{public_id}/",
            self._customer(token),
        )

    def _line(self, product: ProductChoice) -> dict[str, object]:
        options = self.rng.sample(product.options, k=self.rng.randint(0, min(2, len(product.options))))
        quantity = self.rng.randint(1, 5) if self.rng.random() < 0.85 else self.rng.randint(10, 40)
        return {"sku": product.sku, "quantity": quantity, "options": options}

    def order_place(self) -> PlannedRequest:
        token = self.rng.choice(self.data.customer_tokens)
        count = min(len(self.data.products), self.rng.choices((1, 2, 3), weights=(60, 30, 10))[0])
        lines = [self._line(product) for product in self.rng.sample(self.data.products, k=count)]

        def absorb(status: int, body: bytes) -> None:
            if status == 201:
                self._remember(self.data.customer_orders, (token, json.loads(body)["id"]))

        return PlannedRequest(
            "customer",
            "POST /shop/api/orders/",
            "POST",
            "/shop/api/orders/",
            {**self._customer(token), **JSON},
            json.dumps({"lines": lines}).encode(),
            expected=frozenset({201}),
            absorb=absorb,
        )

    # staff -----------------------------------------------------------------------------------
    def _staff(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.data.staff_token}"}

    def staff_order_list(self) -> PlannedRequest:
        def absorb(status: int, body: bytes) -> None:
            if status == 200:
                for order in json.loads(body)["results"]:
                    if order["status"] == "placed" and order["id"] not in self.claimed:
                        self._remember(self.data.placed_order_ids, order["id"])

        return PlannedRequest(
            "staff",
            "GET /crm/api/orders/",
            "GET",
            "/crm/api/orders/?status=placed&limit=20",
            self._staff(),
            absorb=absorb,
        )

    def staff_order_confirm(self) -> PlannedRequest:
        pool = self.data.placed_order_ids
        while pool:
            order_id = pool.pop(self.rng.randrange(len(pool)))
            if order_id not in self.claimed:
                break
        else:
            return self.staff_order_list()
        self.claimed.add(order_id)
        return PlannedRequest(
            "staff",
            "POST /crm/api/orders/{id}/confirm/",
            "POST",
            f"/crm/api/orders/{order_id}/confirm/",
            self._staff(),
            # Another actor (a person, a second generator) may have moved the order on meanwhile.
            tolerated_codes=frozenset({"invalid_transition"}),
        )

    # external MES API users ------------------------------------------------------------------
    def _partner(self) -> dict[str, str]:
        return {"X-API-Key": self.rng.choice(self.data.api_keys)}

    def quote(self) -> PlannedRequest:
        body = self._line(self.rng.choice(self.data.products))
        return PlannedRequest(
            "external",
            "POST /mes/api/quotes/",
            "POST",
            "/mes/api/quotes/",
            {**self._partner(), **JSON},
            json.dumps(body).encode(),
        )

    def production_list(self) -> PlannedRequest:
        def absorb(status: int, body: bytes) -> None:
            if status == 200:
                for production in json.loads(body)["results"]:
                    if production["id"] not in self._known_production:
                        self._known_production.add(production["id"])
                        self._remember(self.data.production_order_ids, production["id"])

        return PlannedRequest(
            "external",
            "GET /mes/api/production-orders/",
            "GET",
            "/mes/api/production-orders/?limit=20",
            self._partner(),
            absorb=absorb,
        )

    def production_show(self) -> PlannedRequest:
        if not self.data.production_order_ids:
            return self.production_list()
        production_id = self.rng.choice(self.data.production_order_ids)
        return PlannedRequest(
            "external",
            "GET /mes/api/production-orders/{id}/",
            "GET",
            f"/mes/api/production-orders/{production_id}/",
            self._partner(),
        )

    def _remember(self, pool: list, item: object) -> None:
        if len(pool) < POOL_LIMIT:
            pool.append(item)
        else:
            pool[self.rng.randrange(POOL_LIMIT)] = item


def _accumulate(weights: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out
