"""The legacy shop's client of the extracted pricing service (POST {PRICING_API_URL}/mes/api/quotes/,
X-API-Key: PRICING_API_KEY), used instead of the in-process MES when PRICING_API_URL is set: one
quote per distinct order line over a pooled keep-alive session, never waiting longer than
MES_API_TIMEOUT. The service's answer is the price: the shop computes none itself.
"""

from __future__ import annotations

import threading
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
import structlog
from django.conf import settings
from requests.adapters import HTTPAdapter

from legacy.mes.exceptions import PricingServiceUnavailable, RemotePricingRefused
from legacy.mes.pricing import PriceBreakdown

logger = structlog.get_logger(__name__)

QUOTES_PATH = "/mes/api/quotes/"
POOL_SIZE = 8

_local = threading.local()


def remote_pricing_enabled() -> bool:
    return bool(settings.PRICING_API_URL)


def _session() -> requests.Session:
    """This thread's pooled session (requests.Session is not documented as thread-safe)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _local.session = session
    return session


def remote_quote(*, sku: str, option_codes: list[str], quantity: int) -> PriceBreakdown:
    """The pricing service's price of one line.

    Raises RemotePricingRefused (422: unknown product or option, no active rule, ...) or
    PricingServiceUnavailable (a timeout, a connection error, a 5xx, a 429, a refused key, or an
    answer that is not a quote)."""
    url = settings.PRICING_API_URL.rstrip("/") + QUOTES_PATH
    timeout = settings.MES_API_TIMEOUT
    try:
        response = _session().post(
            url,
            json={"sku": sku, "quantity": quantity, "options": list(option_codes)},
            headers={"X-API-Key": settings.PRICING_API_KEY, "Accept": "application/json"},
            timeout=timeout,
        )
    except requests.Timeout as exc:
        logger.warning("pricing_quote.timeout", url=url, timeout=timeout)
        raise PricingServiceUnavailable(f"the pricing service did not answer in {timeout} s") from exc
    except requests.RequestException as exc:
        logger.warning("pricing_quote.unreachable", url=url, error=type(exc).__name__)
        reason = f"the pricing service cannot be reached ({type(exc).__name__})"
        raise PricingServiceUnavailable(reason) from exc
    if response.status_code == 200:
        return _breakdown_of(response)
    if response.status_code == 422:
        error = _error_of(response)
        raise RemotePricingRefused(
            code=str(error.get("code", "unprocessable")),
            message=str(error.get("message", "The quote was refused.")),
            details=error.get("details"),
        )
    if response.status_code == 429:
        value = response.headers.get("Retry-After", "")
        logger.warning("pricing_quote.rate_limited", retry_after=value)
        raise PricingServiceUnavailable(
            "the pricing service rate-limits the shop's key",
            retry_after_seconds=int(value) if value.isascii() and value.isdigit() else 1,
        )
    logger.warning("pricing_quote.failed", status=response.status_code)
    raise PricingServiceUnavailable(f"the pricing service answered {response.status_code}")


def _error_of(response: requests.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        reason = f"the pricing service answered {response.status_code} without an error"
        raise PricingServiceUnavailable(reason)
    return error


def _breakdown_of(response: requests.Response) -> PriceBreakdown:
    try:
        data = response.json()
        parts = data["breakdown"]
        return PriceBreakdown(
            materials=Decimal(parts["materials"]),
            labour=Decimal(parts["labour"]),
            overhead=Decimal(parts["overhead"]),
            margin=Decimal(parts["margin"]),
            discount_percent=Decimal(parts["discount_percent"]),
            unit_price=Decimal(data["unit_price"]),
            quantity=int(data["quantity"]),
            total=Decimal(data["total"]),
        )
    except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
        logger.error("pricing_quote.unreadable")
        raise PricingServiceUnavailable("the pricing service answered a quote the shop cannot read") from exc
