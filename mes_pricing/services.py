"""Pricing writes: issuing API keys."""

import secrets
from dataclasses import dataclass

import structlog
from django.db import IntegrityError, router, transaction

from mes_pricing.exceptions import ApiKeyNameTaken
from mes_pricing.models import API_KEY_PREFIX_LENGTH, ApiKey, hash_api_key

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class IssuedApiKey:
    """A key as issued: `raw` is shown to its holder once and never stored."""

    name: str
    raw: str


def api_key_issue(*, name: str, replace: bool = False) -> IssuedApiKey:
    """Issues a new pricing API key under `name` (a 256-bit random token); only its hash is stored.
    With `replace`, a key of that name is replaced (the old one stops working); without, an
    existing name is refused."""
    raw = secrets.token_urlsafe(32)
    fields = {"prefix": raw[:API_KEY_PREFIX_LENGTH], "key_hash": hash_api_key(raw), "active": True}
    database = router.db_for_write(ApiKey)
    if replace:
        ApiKey.objects.update_or_create(name=name, defaults=fields)
    else:
        try:
            with transaction.atomic(using=database):
                ApiKey.objects.create(name=name, **fields)
        except IntegrityError as exc:  # the name is unique (key hashes do not collide)
            raise ApiKeyNameTaken(name=name) from exc
    logger.info("pricing.api_key_issued", name=name, prefix=fields["prefix"], replaced=replace)
    return IssuedApiKey(name=name, raw=raw)
