"""MES writes and quotes: pricing a product from the database rules, production orders and stages."""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from django.db import IntegrityError, transaction

from legacy.mes.exceptions import (
    ApiKeyNameTaken,
    DuplicateOption,
    InvalidQuantity,
    PricingUnavailable,
    ProductNotOffered,
    UnknownOption,
)
from legacy.mes.models import (
    API_KEY_PREFIX_LENGTH,
    STAGE_SEQUENCE,
    ApiKey,
    PricingRule,
    ProductionOrder,
    ProductionStage,
    ProductionStatus,
    hash_api_key,
)
from legacy.mes.pricing import MaterialUse, OptionCost, PriceBreakdown, Rule, price_calculate
from legacy.shop.models import Product

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class IssuedApiKey:
    """A key as issued: `raw` is shown to its holder once and never stored."""

    name: str
    raw: str


def api_key_issue(*, name: str, replace: bool = False) -> IssuedApiKey:
    """Issues a new MES API key under `name`; only its hash is stored. With `replace`, a key of
    that name is replaced (the old one stops working); without, an existing name is refused."""
    raw = secrets.token_urlsafe(32)
    fields = {"prefix": raw[:API_KEY_PREFIX_LENGTH], "key_hash": hash_api_key(raw), "active": True}
    if replace:
        ApiKey.objects.update_or_create(name=name, defaults=fields)
    else:
        try:
            with transaction.atomic():
                ApiKey.objects.create(name=name, **fields)
        except IntegrityError as exc:  # the name is unique (key hashes do not collide)
            raise ApiKeyNameTaken(name=name) from exc
    logger.info("mes.api_key_issued", name=name, prefix=fields["prefix"], replaced=replace)
    return IssuedApiKey(name=name, raw=raw)


def active_rule() -> Rule:
    rule = PricingRule.objects.filter(active=True).order_by("-created_at", "-id").first()
    if rule is None:
        raise PricingUnavailable()
    return Rule(
        labour_rate_per_hour=rule.labour_rate_per_hour,
        overhead_percent=rule.overhead_percent,
        margin_percent=rule.margin_percent,
        discounts=tuple((d.min_quantity, d.percent) for d in rule.discounts.all()),
    )


def quote_calculate(
    *, product: Product, option_codes: Sequence[str], quantity: int, rule: Rule | None = None
) -> PriceBreakdown:
    """Prices `quantity` of `product` with the chosen options; unknown options are refused."""
    if quantity <= 0:
        raise InvalidQuantity(quantity=quantity)
    if len(set(option_codes)) != len(option_codes):
        raise DuplicateOption()
    known = {option.code: option for option in product.options.all()}
    unknown = sorted(set(option_codes) - known.keys())
    if unknown:
        raise UnknownOption(sku=product.sku, unknown=unknown, available=sorted(known))
    materials = tuple(
        MaterialUse(unit_cost=use.material.unit_cost, quantity=use.quantity)
        for use in product.materials.all()
    )
    options = tuple(
        OptionCost(
            code=code,
            materials=(
                (MaterialUse(known[code].extra_material.unit_cost, known[code].extra_material_quantity),)
                if known[code].extra_material
                else ()
            ),
            labour_minutes=known[code].extra_labour_minutes,
        )
        for code in sorted(option_codes)
    )
    return price_calculate(
        materials=materials,
        labour_minutes=product.labour_minutes,
        options=options,
        quantity=quantity,
        rule=rule or active_rule(),
    )


def quote_for_sku(*, sku: str, option_codes: Sequence[str], quantity: int) -> tuple[Product, PriceBreakdown]:
    """The active product with this SKU and its price (see quote_calculate)."""
    product = (
        Product.objects.filter(sku=sku, active=True)
        .prefetch_related("materials__material", "options__extra_material")
        .first()
    )
    if product is None:
        raise ProductNotOffered(sku=sku)
    return product, quote_calculate(product=product, option_codes=option_codes, quantity=quantity)


def production_order_create(
    *, order_id: int, order_public_id: str, lines: list[dict], at: datetime
) -> tuple[ProductionOrder, bool]:
    """Creates the production order for a shop order; a repeated request returns the first one."""
    existing = ProductionOrder.objects.filter(order_id=order_id).first()
    if existing:
        return existing, False
    try:
        with transaction.atomic():
            production = ProductionOrder.objects.create(
                order_id=order_id, order_public_id=order_public_id, lines=lines
            )
            ProductionStage.objects.create(production_order=production, status=ProductionStatus.QUEUED, at=at)
    except IntegrityError:
        return ProductionOrder.objects.get(order_id=order_id), False
    logger.info("production.created", order_id=order_id, production_order_id=production.id)
    return production, True


def production_advance(*, production_order_id: int, at: datetime) -> ProductionOrder | None:
    """Moves a production order one stage on; None when it is already done."""
    with transaction.atomic():
        production = ProductionOrder.objects.select_for_update().get(id=production_order_id)
        index = STAGE_SEQUENCE.index(ProductionStatus(production.status))
        if index == len(STAGE_SEQUENCE) - 1:
            return None
        production.status = STAGE_SEQUENCE[index + 1]
        production.save(update_fields=["status", "updated_at"])
        ProductionStage.objects.create(production_order=production, status=production.status, at=at)
    logger.info("production.advanced", production_order_id=production.id, status=production.status)
    return production
