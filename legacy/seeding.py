"""Builds a realistic data set for the legacy monolith: catalogue, pricing rule, customers, orders
with a consistent status history, MES production orders and CRM notes.

Orders are priced by the MES's own `quote_calculate`, so a seeded order is indistinguishable from
one placed through the shop. Bulk rows go through PostgreSQL COPY in one transaction: 100,000
orders took 14-20 s on 2 cores, and a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import random
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from django.db import connections, transaction
from django.db.models import Model

from config.routers import model_database_alias
from legacy.crm.models import Note
from legacy.mes.models import (
    STAGE_SEQUENCE,
    PricingRule,
    ProductionOrder,
    ProductionStage,
    QuantityDiscount,
)
from legacy.mes.pricing import PriceBreakdown, Rule
from legacy.mes.services import quote_calculate
from legacy.shop.models import (
    Customer,
    Material,
    Order,
    OrderLine,
    OrderStatus,
    OrderStatusChange,
    Product,
    ProductMaterial,
    ProductOption,
)

logger = structlog.get_logger(__name__)

# Every table the seed fills, children first (the order TRUNCATE and counts are shown in).
SEEDED_MODELS: tuple[type[Model], ...] = (
    Note,
    ProductionStage,
    ProductionOrder,
    OrderStatusChange,
    OrderLine,
    Order,
    Customer,
    ProductOption,
    ProductMaterial,
    Product,
    Material,
    QuantityDiscount,
    PricingRule,
)

# Orders older than this are finished (done or cancelled); younger ones are still moving.
SETTLED_AFTER = timedelta(days=14)
ORDER_CHUNK = 5_000

MATERIALS: tuple[tuple[str, str, str, str], ...] = (
    ("OAK", "Oak board", "m2", "48.5000"),
    ("BEECH", "Beech board", "m2", "36.2000"),
    ("PINE", "Pine board", "m2", "18.9000"),
    ("PLY", "Birch plywood", "m2", "22.4000"),
    ("STEEL", "Steel tube", "m", "7.8500"),
    ("ALU", "Aluminium profile", "m", "11.3000"),
    ("GLASS", "Tempered glass", "m2", "64.0000"),
    ("LACQ", "Clear lacquer", "l", "16.7500"),
    ("PAINT", "Enamel paint", "l", "13.2000"),
    ("OIL", "Hardwax oil", "l", "29.9000"),
    ("FELT", "Wool felt", "m2", "21.0000"),
    ("FOAM", "Upholstery foam", "m2", "9.6000"),
    ("SCREW", "Screw set", "pcs", "0.0800"),
    ("HINGE", "Concealed hinge", "pcs", "3.4500"),
    ("RUNNER", "Drawer runner pair", "pcs", "12.8000"),
)
KINDS: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    # code, noun, base materials, base labour minutes
    ("TBL", "Table", ("OAK", "BEECH", "PINE", "STEEL"), 180),
    ("DSK", "Desk", ("OAK", "PLY", "STEEL", "ALU"), 150),
    ("CHR", "Chair", ("BEECH", "OAK", "STEEL", "FOAM"), 90),
    ("SHF", "Shelf", ("PINE", "PLY", "OAK", "SCREW"), 45),
    ("CAB", "Cabinet", ("PLY", "OAK", "HINGE", "SCREW"), 200),
    ("BNC", "Bench", ("OAK", "PINE", "STEEL"), 120),
    ("BED", "Bed frame", ("BEECH", "PINE", "SCREW"), 240),
    ("STL", "Stool", ("BEECH", "ALU", "FELT"), 40),
)
OPTIONS: tuple[tuple[str, str, str | None, str, int], ...] = (
    # code, name, extra material, extra quantity, extra labour minutes
    ("lacquer", "Clear lacquer finish", "LACQ", "0.4000", 20),
    ("paint-white", "White enamel", "PAINT", "0.5000", 30),
    ("oiled", "Hardwax oiled", "OIL", "0.2500", 25),
    ("glass-top", "Glass top", "GLASS", "0.8000", 15),
    ("felt-pads", "Felt pads", "FELT", "0.0500", 5),
    ("drawer", "Extra drawer", "RUNNER", "1.0000", 35),
    ("soft-close", "Soft-close hinges", "HINGE", "4.0000", 10),
    ("assembly", "Assembled at the works", None, "0", 60),
)
FIRST_NAMES = (
    "Anna Ben Clara David Elif Finn Greta Hugo Ines Jonas Katrin Lars Mia Noah Olga Paul Rosa "
    "Sami Tara Uwe Vera Wim Yara Zoe"
).split()
LAST_NAMES = (
    "Adler Berg Costa Dietz Engel Fischer Graf Hahn Ivanova Jansen Keller Lang Meyer Novak "
    "Otto Peters Quinn Roth Schulz Thiel Urban Vogel Weber Young Ziegler"
).split()
COMPANIES = ("", "", "", "Atelier Nord", "Bürobau GmbH", "Café Central", "Hotel Lindenhof", "Studio 12")
STAFF = ("staff.anna", "staff.ben", "staff.clara", "staff.david")
NOTE_TEXTS = (
    "Customer asked for delivery before the end of the month.",
    "Called to confirm the finish; lacquer as ordered.",
    "Invoice address differs from the delivery address.",
    "Repeat customer, prefers morning deliveries.",
    "Asked whether the glass top can be tinted; told no.",
    "Payment by bank transfer, reference in the order.",
)
CANCEL_REASONS = ("customer changed their mind", "duplicate order", "payment not received")

# Status weights of orders still moving (younger than SETTLED_AFTER). Confirmed orders are not yet
# sent to the MES, so the polling orchestrator picks them up when the stack starts: keep them few.
RECENT_WEIGHTS = {
    OrderStatus.PLACED: 30,
    OrderStatus.CONFIRMED: 1,
    OrderStatus.IN_PRODUCTION: 25,
    OrderStatus.DONE: 30,
    OrderStatus.CANCELLED: 12,
}
SETTLED_WEIGHTS = {OrderStatus.DONE: 88, OrderStatus.CANCELLED: 12}
# A production order in progress sits at one of these stages.
STAGE_VALUES = [stage.value for stage in STAGE_SEQUENCE]
OPEN_STAGES = STAGE_VALUES[:-1]


@dataclass(frozen=True)
class SeedSize:
    products: int = 40
    customers: int = 300
    orders: int = 2_000
    days: int = 90
    notes_percent: int = 10

    def validate(self) -> None:
        if self.products < 1 or self.customers < 1 or self.orders < 0:
            raise ValueError("a seed needs at least one product and one customer, and no negative orders")
        if self.days < 1:
            raise ValueError("the orders must spread over at least one day")
        if not 0 <= self.notes_percent <= 100:
            raise ValueError("notes_percent is a percentage (0-100)")


@dataclass
class SeedResult:
    rows: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)


class DatabaseNotEmpty(Exception):
    """The legacy database already holds domain rows and the caller did not ask to reset it."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        filled = ", ".join(f"{table}={count}" for table, count in counts.items() if count)
        super().__init__(f"the legacy database is not empty ({filled})")


def _alias() -> str:
    return model_database_alias(Order)


def seeded_table_counts() -> dict[str, int]:
    """Rows in each table the seed fills (what a reset would delete)."""
    alias = _alias()
    return {model._meta.db_table: model._default_manager.using(alias).count() for model in SEEDED_MODELS}


def seeded_tables_truncate() -> dict[str, int]:
    """Deletes every row of the seeded tables (credentials and users stay); returns what was there."""
    counts = seeded_table_counts()
    tables = ", ".join(connections[_alias()].ops.quote_name(m._meta.db_table) for m in SEEDED_MODELS)
    with transaction.atomic(using=_alias()), connections[_alias()].cursor() as cursor:
        # Django's foreign keys are deferred: rows written earlier in the same transaction leave
        # pending checks, and PostgreSQL refuses TRUNCATE until they have run.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # Ids are never reused: change events already published carry them.
        cursor.execute(f"TRUNCATE {tables}")
    logger.info("seed.reset", **counts)
    return counts


def _reserve_ids(cursor: Any, model: type[Model], count: int) -> int:
    """Takes `count` ids from the table's sequence at once; returns the first."""
    if count == 0:
        return 0
    cursor.execute(
        "SELECT setval(seq, nextval(seq) + %s - 1) FROM pg_get_serial_sequence(%s, 'id') AS seq",
        [count, model._meta.db_table],
    )
    last = int(cursor.fetchone()[0])
    return last - count + 1


def _copy(cursor: Any, model: type[Model], columns: Sequence[str], rows: Iterator[tuple] | list) -> int:
    """Writes rows through COPY FROM STDIN on the psycopg cursor underneath Django's."""
    written = 0
    statement = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN"
    with cursor.cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            written += 1
    return written


@dataclass
class _Catalogue:
    products: list[Product]
    options: dict[int, list[str]]  # product id -> option codes
    rule: Rule
    prices: dict[tuple[int, tuple[str, ...], int], PriceBreakdown] = field(default_factory=dict)

    def price(self, product: Product, options: tuple[str, ...], quantity: int) -> PriceBreakdown:
        key = (product.id, options, quantity)
        breakdown = self.prices.get(key)
        if breakdown is None:
            breakdown = quote_calculate(
                product=product, option_codes=options, quantity=quantity, rule=self.rule
            )
            self.prices[key] = breakdown
        return breakdown


def _catalogue_build(*, rng: random.Random, products: int, now: datetime) -> _Catalogue:
    alias = _alias()
    old_rule = PricingRule.objects.using(alias).create(
        name="2023 list prices",
        labour_rate_per_hour=Decimal("52.00"),
        overhead_percent=Decimal("12.00"),
        margin_percent=Decimal("18.00"),
        active=False,
    )
    rule = PricingRule.objects.using(alias).create(
        name="2024 list prices",
        labour_rate_per_hour=Decimal("58.00"),
        overhead_percent=Decimal("12.50"),
        margin_percent=Decimal("22.00"),
        active=True,
    )
    PricingRule.objects.using(alias).filter(id=old_rule.id).update(created_at=now - timedelta(days=400))
    QuantityDiscount.objects.using(alias).bulk_create(
        [QuantityDiscount(rule=old_rule, min_quantity=20, percent=Decimal("5.00"))]
        + [
            QuantityDiscount(rule=rule, min_quantity=minimum, percent=Decimal(percent))
            for minimum, percent in ((10, "3.00"), (25, "6.00"), (100, "10.00"), (500, "15.00"))
        ]
    )
    materials = {
        code: Material(code=code, name=name, unit=unit, unit_cost=Decimal(cost))
        for code, name, unit, cost in MATERIALS
    }
    Material.objects.using(alias).bulk_create(materials.values())
    catalogue = Product.objects.using(alias).bulk_create(
        Product(
            sku=f"{KINDS[i % len(KINDS)][0]}-{i + 1:04d}",
            name=f"{rng.choice(('Nordic', 'Classic', 'Loft', 'Studio', 'Farmhouse', 'Atelier'))} "
            f"{KINDS[i % len(KINDS)][1]} {i + 1}",
            description=f"Made to order in our works. Series {1 + i // len(KINDS)}.",
            labour_minutes=KINDS[i % len(KINDS)][3] + rng.randrange(-15, 31, 5),
        )
        for i in range(products)
    )
    parts: list[ProductMaterial] = []
    options: list[ProductOption] = []
    for i, product in enumerate(catalogue):
        kind = KINDS[i % len(KINDS)]
        for code in rng.sample(kind[2], k=rng.randint(1, min(3, len(kind[2])))):
            used = Decimal(rng.choice(("0.5", "1", "1.5", "2", "3", "4", "8", "12")))
            parts.append(ProductMaterial(product=product, material=materials[code], quantity=used))
        for code, name, material, quantity, minutes in rng.sample(OPTIONS, k=rng.randint(1, 4)):
            options.append(
                ProductOption(
                    product=product,
                    code=code,
                    name=name,
                    extra_material=materials[material] if material else None,
                    extra_material_quantity=Decimal(quantity),
                    extra_labour_minutes=minutes,
                )
            )
    ProductMaterial.objects.using(alias).bulk_create(parts)
    ProductOption.objects.using(alias).bulk_create(options)
    priced = list(
        Product.objects.using(alias)
        .filter(id__in=[p.id for p in catalogue])
        .prefetch_related("materials__material", "options__extra_material")
        .order_by("id")
    )
    from legacy.mes.services import active_rule

    return _Catalogue(
        products=priced,
        options={p.id: [o.code for o in p.options.all()] for p in priced},
        rule=active_rule(),
    )


def _customers_copy(cursor: Any, *, rng: random.Random, count: int, start: datetime) -> list[tuple[int, str]]:
    """Writes `count` customers; returns (id, email) of each."""
    first_id = _reserve_ids(cursor, Customer, count)
    customers: list[tuple[int, str]] = []
    rows = []
    for i in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}.{i + 1}@example.test".lower()
        customer_id = first_id + i
        customers.append((customer_id, email))
        created = start + timedelta(seconds=rng.uniform(0, 3600 * 24 * 30))
        rows.append(
            (customer_id, email, f"{first} {last}", rng.choice(COMPANIES), secrets.token_urlsafe(24), created)
        )
    _copy(cursor, Customer, ("id", "email", "name", "company", "api_token", "created_at"), rows)
    return customers


def _fit(start: datetime, steps: list[timedelta], end: datetime) -> list[datetime]:
    """Times after `start` spaced by `steps`, squeezed proportionally to end before `end`."""
    total = sum(steps, timedelta())
    room = end - start
    scale = min(1.0, (room * 0.95) / total) if total > timedelta() else 1.0
    times = []
    at = start
    for step in steps:
        at = at + step * scale
        times.append(at)
    return times


@dataclass
class _OrderRows:
    orders: list[tuple] = field(default_factory=list)
    lines: list[tuple] = field(default_factory=list)
    history: list[tuple] = field(default_factory=list)
    production: list[tuple] = field(default_factory=list)
    stages: list[tuple] = field(default_factory=list)
    notes: list[tuple] = field(default_factory=list)


def _quantity(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.80:
        return rng.randint(1, 6)
    if roll < 0.95:
        return rng.randint(10, 40)
    return rng.choice((100, 120, 150, 200, 500))


def _order_rows(
    *,
    rng: random.Random,
    catalogue: _Catalogue,
    customers: list[tuple[int, str]],
    ids: dict[str, int],
    index: int,
    count: int,
    first: datetime,
    now: datetime,
    total_orders: int,
    notes_percent: int,
    result: SeedResult,
) -> _OrderRows:
    """Rows for orders [index, index + count) of `total_orders`, spread evenly from `first` to
    `now`; `ids` holds the next free id of each table and moves on."""
    out = _OrderRows()
    span = (now - first).total_seconds()
    for n in range(index, index + count):
        order_id = ids["order"]
        ids["order"] += 1
        public_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        customer_id, email = customers[rng.randrange(len(customers))]
        created = first + timedelta(seconds=span * (n + rng.random()) / total_orders)
        settled = now - created > SETTLED_AFTER
        weights = SETTLED_WEIGHTS if settled else RECENT_WEIGHTS
        status = rng.choices(list(weights), weights=list(weights.values()))[0]

        total = Decimal(0)
        production_lines = []
        for product in rng.sample(catalogue.products, k=min(len(catalogue.products), _line_count(rng))):
            available = catalogue.options[product.id]
            chosen = tuple(sorted(rng.sample(available, k=rng.randint(0, min(2, len(available))))))
            quantity = _quantity(rng)
            breakdown = catalogue.price(product, chosen, quantity)
            total += breakdown.total
            out.lines.append(
                (ids["line"], order_id, product.id, quantity, json.dumps(list(chosen)),
                 breakdown.unit_price, breakdown.total)
            )  # fmt: skip
            ids["line"] += 1
            production_lines.append({"sku": product.sku, "quantity": quantity, "options": list(chosen)})

        history = [(OrderStatus.PLACED.value, created, email, "")]
        sent_at = None
        stage = ""
        if status == OrderStatus.CANCELLED:
            (cancelled,) = _fit(created, [timedelta(hours=rng.uniform(0.5, 72))], now)
            actor = rng.choice((email, *STAFF))
            history.append((OrderStatus.CANCELLED.value, cancelled, actor, rng.choice(CANCEL_REASONS)))
        elif status != OrderStatus.PLACED:
            if status == OrderStatus.DONE:
                stage = "done"
            elif status == OrderStatus.IN_PRODUCTION:
                stage = rng.choice(OPEN_STAGES)
            stage_count = 0 if status == OrderStatus.CONFIRMED else STAGE_VALUES.index(stage) + 1
            steps = [timedelta(hours=rng.uniform(0.2, 48))]  # placed -> confirmed
            if stage_count:
                steps.append(timedelta(seconds=rng.uniform(0.5, 5.5)))  # poll -> production order
                steps += [timedelta(hours=rng.uniform(1, 30)) for _ in range(stage_count - 1)]
            times = _fit(created, steps, now)
            history.append((OrderStatus.CONFIRMED.value, times[0], rng.choice(STAFF), ""))
            if stage_count:
                sent_at = times[1]
                history.append((OrderStatus.IN_PRODUCTION.value, times[1], "mes", ""))
                if stage == "done":
                    history.append((OrderStatus.DONE.value, times[-1], "mes", ""))
                production_id = ids["production"]
                ids["production"] += 1
                out.production.append(
                    (production_id, order_id, public_id, stage, json.dumps(production_lines),
                     times[1], times[-1])
                )  # fmt: skip
                for stage_index, at in enumerate(times[1:]):
                    out.stages.append((ids["stage"], production_id, STAGE_VALUES[stage_index], at))
                    ids["stage"] += 1
        for status_value, at, actor, note in history:
            out.history.append((ids["history"], order_id, status_value, note, actor, at))
            ids["history"] += 1
        out.orders.append(
            (order_id, public_id, customer_id, status, total, "EUR", created, history[-1][1], sent_at, stage)
        )
        if rng.randrange(100) < notes_percent:
            out.notes.append(
                (ids["note"], customer_id, order_id, rng.choice(STAFF), rng.choice(NOTE_TEXTS),
                 history[-1][1])
            )  # fmt: skip
            ids["note"] += 1
        result.statuses[status] = result.statuses.get(status, 0) + 1
    return out


def _line_count(rng: random.Random) -> int:
    return rng.choices((1, 2, 3, 4), weights=(50, 30, 15, 5))[0]


def legacy_data_seed(
    *,
    size: SeedSize,
    now: datetime,
    random_seed: int = 42,
    reset: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> SeedResult:
    """Fills the legacy database with a catalogue, customers and `size.orders` orders.

    Refuses (DatabaseNotEmpty) when any seeded table has rows, unless `reset` empties them first,
    in the same transaction as the new rows.
    """
    size.validate()
    rng = random.Random(random_seed)
    alias = _alias()
    result = SeedResult()
    with transaction.atomic(using=alias):
        counts = seeded_table_counts()
        if any(counts.values()):
            if not reset:
                raise DatabaseNotEmpty(counts)
            seeded_tables_truncate()
        first = now - timedelta(days=size.days)
        catalogue = _catalogue_build(rng=rng, products=size.products, now=now)
        with connections[alias].cursor() as cursor:
            customers = _customers_copy(
                cursor, rng=rng, count=size.customers, start=first - timedelta(days=30)
            )
            # Upper bounds of what the orders need: ids are cheap, gaps are harmless.
            ids = {
                "order": _reserve_ids(cursor, Order, size.orders),
                "line": _reserve_ids(cursor, OrderLine, size.orders * 4),
                "history": _reserve_ids(cursor, OrderStatusChange, size.orders * 4),
                "production": _reserve_ids(cursor, ProductionOrder, size.orders),
                "stage": _reserve_ids(cursor, ProductionStage, size.orders * len(STAGE_SEQUENCE)),
                "note": _reserve_ids(cursor, Note, size.orders),
            }
            written = dict.fromkeys(("orders", "lines", "history", "production", "stages", "notes"), 0)
            for index in range(0, size.orders, ORDER_CHUNK):
                count = min(ORDER_CHUNK, size.orders - index)
                rows = _order_rows(
                    rng=rng,
                    catalogue=catalogue,
                    customers=customers,
                    ids=ids,
                    index=index,
                    count=count,
                    first=first,
                    now=now,
                    total_orders=size.orders,
                    notes_percent=size.notes_percent,
                    result=result,
                )
                written["orders"] += _copy(
                    cursor,
                    Order,
                    ("id", "public_id", "customer_id", "status", "total", "currency", "created_at",
                     "updated_at", "sent_to_mes_at", "production_stage"),
                    rows.orders,
                )  # fmt: skip
                written["lines"] += _copy(
                    cursor,
                    OrderLine,
                    ("id", "order_id", "product_id", "quantity", "options", "unit_price", "line_total"),
                    rows.lines,
                )
                written["history"] += _copy(
                    cursor,
                    OrderStatusChange,
                    ("id", "order_id", "status", "note", "actor", "at"),
                    rows.history,
                )
                written["production"] += _copy(
                    cursor,
                    ProductionOrder,
                    ("id", "order_id", "order_public_id", "status", "lines", "created_at", "updated_at"),
                    rows.production,
                )
                written["stages"] += _copy(
                    cursor, ProductionStage, ("id", "production_order_id", "status", "at"), rows.stages
                )
                written["notes"] += _copy(
                    cursor,
                    Note,
                    ("id", "customer_id", "order_id", "author", "text", "created_at"),
                    rows.notes,
                )
                if on_progress:
                    on_progress(index + count, size.orders)
            for model in SEEDED_MODELS:
                cursor.execute(f"ANALYZE {model._meta.db_table}")
    result.rows.update(seeded_table_counts())
    logger.info("seed.done", orders=written["orders"], customers=len(customers), products=size.products)
    return result
