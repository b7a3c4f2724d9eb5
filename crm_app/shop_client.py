"""The CRM's client of the shop service's internal API (/shop/internal/, shop_app/internal/): the
customers and orders are the shop's, and the CRM reads them and asks for staff decisions over HTTP.

One pooled `requests.Session` per process (keep-alive to the shop), every call bounded by
settings.SHOP_INTERNAL_TIMEOUT: a shop that is down, slow or failing becomes `ShopUnavailable`,
which the API edge answers with 503, never a hang.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import structlog
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

logger = structlog.get_logger(__name__)

INTERNAL_PREFIX = "/shop/internal/"
# Answers of the shop that belong to the staff client's request (the legacy CRM gives the same);
# any other status (5xx, or 401/403: the shop refusing the CRM's own credential) is the shop
# being unavailable to the CRM, not something the staff client can correct.
RELAYED_STATUSES = frozenset({200, 201, 400, 404, 422})
ACTOR_HEADER = "X-Acting-User"


class ShopUnavailable(Exception):
    """The shop did not answer in time, could not be reached, or failed (its status in `status`)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ShopAnswer:
    status: int
    body: Any


_session: requests.Session | None = None


def _shop_session() -> requests.Session:
    global _session
    if _session is None:
        session = requests.Session()
        # One retry of a connection that could not be made (a pooled keep-alive connection the shop
        # closed meanwhile); a request that reached the shop is never sent twice.
        retry = Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0, raise_on_status=False)
        session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=8, max_retries=retry))
        session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=8, max_retries=retry))
        session.headers["Authorization"] = f"Service {settings.SERVICE_API_TOKEN}"
        _session = session
    return _session


def shop_call(
    method: str,
    path: str,
    *,
    query: str = "",
    body: Any = None,
    actor: str | None = None,
) -> ShopAnswer:
    """Calls `INTERNAL_PREFIX + path` on the shop; raises ShopUnavailable unless the shop gave an
    answer that belongs to the caller's request (RELAYED_STATUSES)."""
    url = settings.SHOP_INTERNAL_URL.rstrip("/") + INTERNAL_PREFIX + path + (f"?{query}" if query else "")
    headers: Mapping[str, str] = {ACTOR_HEADER: actor} if actor else {}
    timeout = settings.SHOP_INTERNAL_TIMEOUT
    try:
        response = _shop_session().request(
            method, url, json=body, headers=headers, timeout=(timeout, timeout), allow_redirects=False
        )
    except requests.Timeout as exc:
        logger.warning("shop.timeout", method=method, path=path, timeout=timeout)
        raise ShopUnavailable(f"The shop service did not answer within {timeout:g} s.") from exc
    except requests.RequestException as exc:
        logger.warning("shop.unreachable", method=method, path=path, error=type(exc).__name__)
        raise ShopUnavailable("The shop service cannot be reached.") from exc
    if response.status_code not in RELAYED_STATUSES:
        logger.warning("shop.failed", method=method, path=path, status=response.status_code)
        raise ShopUnavailable(
            f"The shop service failed to answer (HTTP {response.status_code}).", status=response.status_code
        )
    try:
        return ShopAnswer(status=response.status_code, body=response.json())
    except ValueError as exc:
        logger.warning("shop.not_json", method=method, path=path, status=response.status_code)
        raise ShopUnavailable("The shop service gave an answer that is not JSON.") from exc
