"""A Celery task's log lines carry the request id (and trace id) of the web request that sent it."""

from types import SimpleNamespace

import structlog

from ops import celery_logs


def test_request_id_bound_when_sending_travels_in_the_headers_and_is_bound_in_the_task() -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="req-1", trace_id="a" * 32)
    headers: dict[str, object] = {}
    celery_logs._carry_request_context(headers=headers)
    assert headers == {"request_id": "req-1", "trace_id": "a" * 32}

    structlog.contextvars.clear_contextvars()
    task = SimpleNamespace(name="legacy.crm.tasks.x", request=SimpleNamespace(**headers))
    celery_logs._bind_task_context(task_id="t-1", task=task)
    assert structlog.contextvars.get_contextvars() == {
        "task_id": "t-1",
        "task": "legacy.crm.tasks.x",
        "request_id": "req-1",
        "trace_id": "a" * 32,
    }
    celery_logs._unbind_task_context()
    assert structlog.contextvars.get_contextvars() == {}


def test_a_task_sent_outside_any_request_carries_nothing() -> None:
    structlog.contextvars.clear_contextvars()
    headers: dict[str, object] = {"id": "x"}
    celery_logs._carry_request_context(headers=headers)
    assert headers == {"id": "x"}
