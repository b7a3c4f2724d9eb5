"""factory_boy factories for the legacy domain, shared by unit and integration tests."""

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from legacy.mes.models import ApiKey, PricingRule, QuantityDiscount, hash_api_key
from legacy.shop.models import Customer, Material, Product, ProductMaterial, ProductOption


class MaterialFactory(factory.django.DjangoModelFactory[Material]):
    class Meta:
        model = Material

    code = factory.Sequence(lambda n: f"MAT{n:05d}")
    name = factory.LazyAttribute(lambda o: f"Material {o.code}")
    unit_cost = Decimal("12.5000")


def _product_parts(product: Product, create: bool, extracted: object, **kwargs: object) -> None:
    if not create or extracted is False:
        return
    ProductMaterial.objects.create(product=product, material=MaterialFactory.create(), quantity=Decimal("2"))
    ProductOption.objects.create(
        product=product,
        code="lacquer",
        name="Lacquer",
        extra_material=MaterialFactory.create(unit_cost=Decimal("4")),
        extra_material_quantity=Decimal("0.5"),
        extra_labour_minutes=10,
    )


class ProductFactory(factory.django.DjangoModelFactory[Product]):
    class Meta:
        model = Product
        skip_postgeneration_save = True

    sku = factory.Sequence(lambda n: f"SKU-{n:06d}")
    name = factory.LazyAttribute(lambda o: f"Product {o.sku}")
    labour_minutes = 30
    # Module-level hooks: factory_boy calls them with the built model instance, not the factory.
    with_parts = factory.post_generation(_product_parts)


def _rule_tiers(rule: PricingRule, create: bool, extracted: object, **kwargs: object) -> None:
    if create:
        QuantityDiscount.objects.create(rule=rule, min_quantity=10, percent=Decimal("5"))
        QuantityDiscount.objects.create(rule=rule, min_quantity=100, percent=Decimal("12"))


class PricingRuleFactory(factory.django.DjangoModelFactory[PricingRule]):
    class Meta:
        model = PricingRule
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"rule-{n}")
    labour_rate_per_hour = Decimal("60.00")
    overhead_percent = Decimal("10.00")
    margin_percent = Decimal("20.00")
    tiers = factory.post_generation(_rule_tiers)


class CustomerFactory(factory.django.DjangoModelFactory[Customer]):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"customer{n}@example.test")
    name = factory.Sequence(lambda n: f"Customer {n}")


def staff_token(username: str = "staff") -> str:
    user, _ = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True})
    return Token.objects.get_or_create(user=user)[0].key


def api_key(name: str = "partner", raw: str = "test-key-partner") -> str:
    ApiKey.objects.get_or_create(name=name, defaults={"prefix": raw[:8], "key_hash": hash_api_key(raw)})
    return raw
