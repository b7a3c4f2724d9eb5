"""Plans written by tests and benchmarks pass the toolkit's own plan validation."""

from harness.proxy_plan import plan_route, plan_slice, plan_text
from strangler.plan import plan_parse


def test_a_written_plan_parses_with_its_backends_slices_and_sections() -> None:
    text = plan_text(
        backends={"legacy": "http://127.0.0.1:8001", "new": "http://127.0.0.1:8002"},
        slices={
            "catalogue": plan_slice(
                service="new",
                routes=[
                    plan_route("products", "/shop/api/products/", methods=["GET", "HEAD"]),
                    plan_route("echo", "/echo/"),
                ],
                canary={"pin_after_write_seconds": 1.5},
            ),
            "production": plan_slice(
                service="new", routes=[plan_route("orders", "/mes/api/orders/", exposure="internal")]
            ),
        },
    )
    plan = plan_parse(text)
    assert plan.default_backend == "legacy"
    assert {b.name: b.urls for b in plan.backends} == {
        "legacy": ["http://127.0.0.1:8001"],
        "new": ["http://127.0.0.1:8002"],
    }
    catalogue, production = plan.slices
    assert [(r.name, r.prefix, r.methods) for r in catalogue.routes][0] == (
        "products",
        "/shop/api/products/",
        ["GET", "HEAD"],
    )
    assert catalogue.settings["pin_after_write_seconds"] == 1.5
    assert production.routes[0].exposure == "internal"
