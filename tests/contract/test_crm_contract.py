"""The CRM staff API's contract, over real HTTP, against the legacy monolith and against the
extracted CRM service (which reads and decides through the shop service's internal API): the same
requests get the same status codes, JSON shapes and values on both sides, so staff cannot tell
which side answered. The extracted side also answers 503 in the error shape, without hanging,
when the shop cannot answer.

Each side starts from its own copy of one seeded world (tests/contract/crm_fixtures.py), so a write
case runs once on each side on the same order and must answer the same.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from ops.process_group import ProcessGroup, free_port

if TYPE_CHECKING:
    from tests.contract.crm_fixtures import CrmStack, CrmWorld

pytest_plugins = ["tests.contract.crm_fixtures"]

pytestmark = [pytest.mark.integration, pytest.mark.django_db(databases=["default", "shop", "crm"])]

SIDES = ("legacy", "crm")
STATUSES = "placed, confirmed, cancelled, in_production, done"
TIMESTAMP_FIELDS = {"created_at", "at", "sent_to_mes_at"}


class Staff:
    """A requests session of one side's staff API with the world's staff token."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(f"{self.base_url}/crm/api/{path}", timeout=10, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(f"{self.base_url}/crm/api/{path}", json=body, timeout=10, **kwargs)


def base_url(stack: CrmStack, side: str) -> str:
    return stack.legacy if side == "legacy" else stack.crm


@pytest.fixture(params=SIDES)
def side(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def staff(side: str, crm_stack: CrmStack, crm_world: CrmWorld) -> Staff:
    return Staff(base_url(crm_stack, side), crm_world.staff_token)


def body_of(response: requests.Response, status: int) -> Any:
    assert response.status_code == status, f"{response.status_code} {response.text[:400]}"
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return response.json()


def error_of(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    body = body_of(response, status)
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


def shape(value: Any) -> Any:
    """The JSON shape: keys and value types, recursively (a list by its first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def without_times(value: Any) -> Any:
    """The value with timestamps of writes made during the run (which differ by side) blanked."""
    if isinstance(value, dict):
        return {k: ("<time>" if k in TIMESTAMP_FIELDS and v else without_times(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [without_times(item) for item in value]
    return value


# Reads: exactly the same body on both sides, page links aside (each names its own host).
READS = (
    "customers/",
    "customers/?limit=7&offset=14",
    "customers/?offset=50",
    "orders/",
    "orders/?status=cancelled",
    "orders/?status=done&limit=3&offset=2",
    "orders/?limit=500",
)


@pytest.mark.parametrize("path", READS)
def test_reads_answer_the_same_body_on_both_sides(
    path: str, crm_stack: CrmStack, crm_world: CrmWorld
) -> None:
    legacy = Staff(crm_stack.legacy, crm_world.staff_token).get(path)
    crm = Staff(crm_stack.crm, crm_world.staff_token).get(path)
    legacy_body, crm_body = body_of(legacy, 200), body_of(crm, 200)
    assert list(crm_body) == list(legacy_body) == ["count", "next", "previous", "results"]
    assert crm_body["results"] == legacy_body["results"]
    assert crm_body["count"] == legacy_body["count"] > 0
    for link in ("next", "previous"):
        expected = legacy_body[link] and legacy_body[link].replace(crm_stack.legacy, crm_stack.crm)
        assert crm_body[link] == expected, link


def test_customer_and_order_details_are_the_same_on_both_sides(
    crm_stack: CrmStack, crm_world: CrmWorld
) -> None:
    legacy = Staff(crm_stack.legacy, crm_world.staff_token)
    crm = Staff(crm_stack.crm, crm_world.staff_token)
    paths = [f"customers/{crm_world.customer}/", f"orders/{crm_world.with_notes}/"]
    paths += [f"orders/{crm_world.sent}/", f"orders/{crm_world.cancelled}/"]
    paths += [f"orders/{crm_world.with_notes}/notes/"]
    for path in paths:
        assert body_of(crm.get(path), 200) == body_of(legacy.get(path), 200), path


def test_customer_list_pages_by_id(staff: Staff) -> None:
    from legacy.shop.models import Customer

    body = body_of(staff.get("customers/?limit=5&offset=5"), 200)
    ids = list(Customer.objects.order_by("id").values_list("id", flat=True)[5:10])
    assert body["count"] == Customer.objects.count()
    assert [c["id"] for c in body["results"]] == ids
    assert set(body["results"][0]) == {"id", "email", "name", "company", "created_at"}
    assert body["next"] == f"{staff.base_url}/crm/api/customers/?limit=5&offset=10"
    assert body["previous"] == f"{staff.base_url}/crm/api/customers/?limit=5"


def test_order_detail_shows_customer_lines_and_history(staff: Staff, crm_world: CrmWorld) -> None:
    from legacy.shop.models import Order

    order = Order.objects.get(id=crm_world.sent)
    body = body_of(staff.get(f"orders/{order.id}/"), 200)
    assert list(body) == [
        "id", "public_id", "customer", "status", "production_stage", "total", "currency",
        "created_at", "sent_to_mes_at", "lines", "history",
    ]  # fmt: skip
    assert (body["id"], body["public_id"], body["status"]) == (order.id, str(order.public_id), "confirmed")
    assert body["total"] == str(order.total) and body["customer"]["id"] == order.customer_id
    assert [line["quantity"] for line in body["lines"]] == [2]
    assert [change["status"] for change in body["history"]] == ["placed"]


def test_status_filter_lists_only_that_status(staff: Staff) -> None:
    from legacy.shop.models import Order

    body = body_of(staff.get("orders/?status=cancelled&limit=500"), 200)
    assert body["results"] and {o["status"] for o in body["results"]} == {"cancelled"}
    expected = list(Order.objects.filter(status="cancelled").order_by("-id").values_list("id", flat=True))
    assert [o["id"] for o in body["results"]] == expected[:500]


@pytest.mark.parametrize("query", ["status=bogus", "status="])
def test_unknown_status_filter_is_refused(staff: Staff, query: str) -> None:
    error = error_of(staff.get(f"orders/?{query}"), 400, "invalid_request")
    assert error == {
        "code": "invalid_request",
        "message": "The request has invalid fields.",
        "details": {"status": [f"Choose one of {STATUSES}."]},
    }


def test_bad_page_parameter_is_refused(staff: Staff) -> None:
    error = error_of(staff.get("customers/?limit=abc"), 400, "invalid_request")
    assert error["details"] == {"limit": ["Must be one whole number of at least 1."]}


@pytest.mark.parametrize(
    "path, message",
    [
        ("customers/999999/", "No Customer matches the given query."),
        ("orders/999999/", "No Order matches the given query."),
        ("orders/999999/notes/", "No Order matches the given query."),
    ],
)
def test_unknown_ids_are_404(staff: Staff, path: str, message: str) -> None:
    assert error_of(staff.get(path), 404, "not_found") == {"code": "not_found", "message": message}


@pytest.mark.parametrize("action", ["confirm/", "cancel/", "notes/"])
def test_writes_to_an_unknown_order_are_404(staff: Staff, action: str) -> None:
    body = {"reason": "gone", "text": "hello"}
    error = error_of(staff.post(f"orders/999999/{action}", body), 404, "not_found")
    assert error["message"] == "No Order matches the given query."


def test_confirm_a_placed_order_then_again(staff: Staff, crm_world: CrmWorld) -> None:
    order_id = crm_world.placed[0]
    first = body_of(staff.post(f"orders/{order_id}/confirm/"), 200)
    assert first["status"] == "confirmed"
    assert [(c["status"], c["note"]) for c in first["history"]] == [("placed", ""), ("confirmed", "")]
    again = body_of(staff.post(f"orders/{order_id}/confirm/"), 200)
    assert again == first, "confirming a confirmed order changes nothing"
    assert body_of(staff.get(f"orders/{order_id}/"), 200) == first


def test_confirm_a_cancelled_order_is_refused(staff: Staff, crm_world: CrmWorld) -> None:
    order_id = crm_world.cancelled
    assert error_of(staff.post(f"orders/{order_id}/confirm/"), 422, "invalid_transition") == {
        "code": "invalid_transition",
        "message": f"Order {order_id} is cancelled; only a placed order can be confirmed.",
    }
    assert body_of(staff.get(f"orders/{order_id}/"), 200)["status"] == "cancelled"


def test_cancel_with_a_reason(staff: Staff, crm_world: CrmWorld) -> None:
    order_id = crm_world.placed[1]
    body = body_of(staff.post(f"orders/{order_id}/cancel/", {"reason": "customer called"}), 200)
    assert body["status"] == "cancelled"
    assert [(c["status"], c["note"]) for c in body["history"]] == [
        ("placed", ""),
        ("cancelled", "customer called"),
    ]
    again = body_of(staff.post(f"orders/{order_id}/cancel/", {"reason": "twice"}), 200)
    assert again == body


@pytest.mark.parametrize(
    "payload, details",
    [
        ({}, {"reason": ["This field is required."]}),
        ({"reason": ""}, {"reason": ["This field may not be blank."]}),
        ({"reason": 3}, {"reason": ["Not a valid string."]}),
        ({"reason": "x" * 301}, {"reason": ["Ensure this field has no more than 300 characters."]}),
    ],
)
def test_cancel_without_a_usable_reason_is_refused(
    staff: Staff, crm_world: CrmWorld, payload: dict[str, Any], details: dict[str, Any]
) -> None:
    order_id = crm_world.placed[2]
    assert error_of(staff.post(f"orders/{order_id}/cancel/", payload), 400, "invalid_request") == {
        "code": "invalid_request",
        "message": "The request has invalid fields.",
        "details": details,
    }
    assert body_of(staff.get(f"orders/{order_id}/"), 200)["status"] == "placed"


def test_malformed_body_is_refused(staff: Staff, crm_world: CrmWorld) -> None:
    response = staff.session.post(
        f"{staff.base_url}/crm/api/orders/{crm_world.placed[2]}/cancel/",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert error_of(response, 400, "malformed_request")["message"].startswith("JSON parse error")


def test_cancel_an_order_sent_to_production_is_refused(staff: Staff, crm_world: CrmWorld) -> None:
    order_id = crm_world.sent
    assert error_of(
        staff.post(f"orders/{order_id}/cancel/", {"reason": "late"}), 422, "invalid_transition"
    ) == {
        "code": "invalid_transition",
        "message": f"Order {order_id} is already in production and cannot be cancelled.",
    }


def test_notes_are_added_and_listed_newest_first(staff: Staff, crm_world: CrmWorld) -> None:
    order_id = crm_world.placed[3]
    assert body_of(staff.get(f"orders/{order_id}/notes/"), 200) == {"results": []}
    first = body_of(staff.post(f"orders/{order_id}/notes/", {"text": "  called back  "}), 201)
    second = body_of(staff.post(f"orders/{order_id}/notes/", {"text": "sent a quote"}), 201)
    assert list(first) == ["id", "author", "text", "order", "created_at"]
    assert (first["author"], first["text"], first["order"]) == ("staff.contract", "called back", order_id)
    assert second["id"] > first["id"]
    listed = body_of(staff.get(f"orders/{order_id}/notes/"), 200)
    assert listed == {"results": [second, first]}


def test_seeded_notes_are_listed(staff: Staff, crm_world: CrmWorld) -> None:
    from legacy.crm.models import Note

    notes = Note.objects.filter(order_id=crm_world.with_notes).order_by("-created_at", "-id")
    listed = body_of(staff.get(f"orders/{crm_world.with_notes}/notes/"), 200)["results"]
    assert [(n["id"], n["author"], n["text"], n["order"]) for n in listed] == [
        (n.id, n.author, n.text, n.order_id) for n in notes
    ]


@pytest.mark.parametrize(
    "payload, details",
    [
        ({"text": ""}, {"text": ["This field may not be blank."]}),
        ({"text": "   "}, {"text": ["This field may not be blank."]}),
        ({}, {"text": ["This field is required."]}),
        ({"text": 7}, {"text": ["Not a valid string."]}),
    ],
)
def test_a_note_without_text_is_refused(
    staff: Staff, crm_world: CrmWorld, payload: dict[str, Any], details: dict[str, Any]
) -> None:
    order_id = crm_world.placed[4]
    assert error_of(staff.post(f"orders/{order_id}/notes/", payload), 400, "invalid_request") == {
        "code": "invalid_request",
        "message": "The request has invalid fields.",
        "details": details,
    }
    assert body_of(staff.get(f"orders/{order_id}/notes/"), 200) == {"results": []}


@pytest.mark.parametrize("path", ["customers/", "orders/", "orders/1/notes/"])
def test_no_token_is_401(side: str, crm_stack: CrmStack, path: str) -> None:
    response = Staff(base_url(crm_stack, side), None).get(path)
    error = error_of(response, 401, "not_authenticated")
    assert error["message"] == "Authentication credentials were not provided."
    assert response.headers["WWW-Authenticate"] == "Token"


def test_unknown_token_is_401(side: str, crm_stack: CrmStack) -> None:
    response = Staff(base_url(crm_stack, side), "0" * 40).get("orders/")
    assert error_of(response, 401, "authentication_failed")["message"] == "Invalid token."


@pytest.mark.parametrize("method, path", [("get", "customers/"), ("post", "orders/{id}/confirm/")])
def test_a_user_who_is_not_staff_is_403(
    side: str, crm_stack: CrmStack, crm_world: CrmWorld, method: str, path: str
) -> None:
    clerk = Staff(base_url(crm_stack, side), crm_world.clerk_token)
    response = getattr(clerk, method)(path.format(id=crm_world.placed[5]))
    error = error_of(response, 403, "permission_denied")
    assert error["message"] == "You do not have permission to perform this action."


def test_the_same_writes_leave_the_same_orders_on_both_sides(
    crm_stack: CrmStack, crm_world: CrmWorld
) -> None:
    """After every case above ran on both sides, the orders they touched read the same."""
    legacy = Staff(crm_stack.legacy, crm_world.staff_token)
    crm = Staff(crm_stack.crm, crm_world.staff_token)
    for order_id in [*crm_world.placed, crm_world.sent, crm_world.cancelled]:
        for path in (f"orders/{order_id}/", f"orders/{order_id}/notes/"):
            legacy_body, crm_body = body_of(legacy.get(path), 200), body_of(crm.get(path), 200)
            assert without_times(crm_body) == without_times(legacy_body), path
            assert shape(crm_body) == shape(legacy_body), path


def test_the_crm_side_announces_its_writes(crm_stack: CrmStack, crm_world: CrmWorld) -> None:
    """A confirm through the CRM leaves in the shop's outbox the event legacy CDC derives from the
    same history row; a note leaves crm.note.added.v1 in the CRM's outbox."""
    from crm_app.models import CrmOutboxEvent
    from shop_app.models import OrderStatusChange, ShopOutboxEvent

    order_id = crm_world.crm_only
    crm = Staff(crm_stack.crm, crm_world.staff_token)
    body_of(crm.post(f"orders/{order_id}/confirm/"), 200)
    body_of(crm.post(f"orders/{order_id}/confirm/"), 200)  # a second confirm announces nothing
    note = body_of(crm.post(f"orders/{order_id}/notes/", {"text": "confirmed by phone"}), 201)

    change = OrderStatusChange.objects.using("shop").get(order_id=order_id, status="confirmed")
    (event,) = ShopOutboxEvent.objects.using("shop").filter(aggregateid=str(order_id))
    assert (event.type, event.aggregatetype) == ("shop.order.confirmed.v1", "order")
    assert set(event.payload) == {"order_id", "at", "actor", "note"}
    assert (event.payload["order_id"], event.payload["actor"], event.payload["note"]) == (
        order_id,
        "staff.contract",
        "",
    )
    assert event.payload["at"].startswith(change.at.strftime("%Y-%m-%dT%H:%M:%S"))
    (added,) = CrmOutboxEvent.objects.using("crm").filter(aggregateid=str(order_id))
    assert (added.type, added.aggregatetype) == ("crm.note.added.v1", "order")
    assert added.payload == {
        "note_id": note["id"],
        "customer_id": crm_world.customer,
        "order_id": order_id,
        "author": "staff.contract",
        "text": "confirmed by phone",
        "created_at": added.payload["created_at"],
    }


class SilentListener:
    """A port that accepts connections and never answers: a shop that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("shop", ["down", "hanging"])
def test_crm_answers_503_when_the_shop_cannot_answer(
    live_env: dict[str, str], crm_world: CrmWorld, shop: str
) -> None:
    from tests.contract.crm_fixtures import web_start

    listener = SilentListener()
    shop_url = listener.url if shop == "hanging" else f"http://127.0.0.1:{free_port()}"
    env = {**live_env, "SHOP_INTERNAL_URL": shop_url, "SHOP_INTERNAL_TIMEOUT": "0.5"}
    try:
        with ProcessGroup() as group:
            crm = Staff(web_start(group, "crm", env), crm_world.staff_token)
            order_id = crm_world.placed[5]
            for method, path, body in [
                ("get", "customers/", None),
                ("get", f"orders/{order_id}/", None),
                ("get", f"orders/{order_id}/notes/", None),
                ("post", f"orders/{order_id}/confirm/", None),
                ("post", f"orders/{order_id}/notes/", {"text": "lost?"}),
            ]:
                started = time.monotonic()
                response = crm.get(path) if method == "get" else crm.post(path, body)
                elapsed = time.monotonic() - started
                error = error_of(response, 503, "shop_unavailable")
                assert "shop service" in error["message"], error
                assert response.headers["Retry-After"] == "5"
                # One connection attempt and its single retry at most, each bounded by the timeout.
                assert elapsed < 2.0, f"{method} {path} took {elapsed:.2f} s"
    finally:
        listener.close()
    from crm_app.models import Note

    assert not Note.objects.using("crm").filter(text="lost?").exists(), "nothing written without the shop"
