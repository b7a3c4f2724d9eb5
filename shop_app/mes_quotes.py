"""The shop's client of the MES quotes API (POST {MES_API_URL}/mes/api/quotes/, X-API-Key): one
price per order line, over a pooled keep-alive session, never waiting longer than MES_API_TIMEOUT.

The quote is the MES's own calculation (same rule, same rounding as the monolith's in-process
pricing): the shop never computes a price itself, so it can never disagree with the MES.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import requests
import structlog
from django.conf import settings
from requests.adapters import HTTPAdapter

from shop_app.exceptions import PricingServiceUnavailable

logger = structlog.get_logger(__name__)

QUOTES_PATH = "/mes/api/quotes/"
API_KEY_HEADER = "X-API-Key"
# One keep-alive connection per concurrent request of this process is enough (granian runs one
# blocking thread per worker); a few spare ones cost nothing.
POOL_SIZE = 8


@dataclass(frozen=True)
class QuoteRequest:
    sku: str
    quantity: int
    options: tuple[str, ...]


@dataclass(frozen=True)
class Quote:
    unit_price: Decimal
    total: Decimal


class QuoteRefused(Exception):
    """The MES refused to price this line (422): its error code, message and details."""

    def __init__(self, *, code: str, message: str, details: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


_local = threading.local()


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


def _retry_after(response: requests.Response) -> int:
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isascii() and value.isdigit() else 1


def quote_fetch(request: QuoteRequest) -> Quote:
    """The MES's price of one line.

    Raises QuoteRefused when the MES refuses the line (422: unknown product or option, no active
    rule, ...) and PricingServiceUnavailable when no price can be had: a timeout, a connection
    error, a 5xx, a rate limit (429), a refused key (401/403) or an answer that is not a quote.
    """
    url = settings.MES_API_URL.rstrip("/") + QUOTES_PATH
    body = {"sku": request.sku, "quantity": request.quantity, "options": list(request.options)}
    try:
        response = _session().post(
            url,
            json=body,
            headers={API_KEY_HEADER: settings.MES_API_KEY, "Accept": "application/json"},
            timeout=settings.MES_API_TIMEOUT,
        )
    except requests.Timeout as exc:
        logger.warning("mes_quote.timeout", url=url, timeout=settings.MES_API_TIMEOUT)
        raise PricingServiceUnavailable(
            f"the MES quotes API did not answer in {settings.MES_API_TIMEOUT} s"
        ) from exc
    except requests.RequestException as exc:
        logger.warning("mes_quote.unreachable", url=url, error=type(exc).__name__)
        raise PricingServiceUnavailable(
            f"the MES quotes API cannot be reached ({type(exc).__name__})"
        ) from exc
    if response.status_code == 200:
        return _quote_of(response)
    if response.status_code == 422:
        error = _error_of(response)
        raise QuoteRefused(
            code=str(error.get("code", "unprocessable")),
            message=str(error.get("message", "The quote was refused.")),
            details=error.get("details"),
        )
    if response.status_code == 429:
        logger.warning("mes_quote.rate_limited", retry_after=response.headers.get("Retry-After"))
        raise PricingServiceUnavailable(
            "the MES quotes API rate-limits the shop's key", retry_after_seconds=_retry_after(response)
        )
    if response.status_code in (401, 403):
        logger.error("mes_quote.key_refused", status=response.status_code)
        raise PricingServiceUnavailable(f"the MES refused the shop's API key ({response.status_code})")
    logger.warning("mes_quote.failed", status=response.status_code)
    raise PricingServiceUnavailable(f"the MES quotes API answered {response.status_code}")


def _error_of(response: requests.Response) -> dict[str, Any]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        raise PricingServiceUnavailable(f"the MES answered {response.status_code} without an error body")
    return error


def _quote_of(response: requests.Response) -> Quote:
    try:
        data = response.json()
        return Quote(unit_price=Decimal(data["unit_price"]), total=Decimal(data["total"]))
    except (ValueError, KeyError, TypeError, InvalidOperation) as exc:
        logger.error("mes_quote.unreadable")
        raise PricingServiceUnavailable("the MES answered a quote the shop cannot read") from exc
