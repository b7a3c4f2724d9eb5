"""An unexpected exception answers the JSON 500 body and logs one JSON line with the traceback and
the request id. The routes that fail live in a test-only URLconf; the production ones have none."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from django.test import Client, override_settings


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the process's JSON log handler writes during the test."""
    formatter = next(
        handler.formatter
        for handler in logging.getLogger().handlers
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logging.getLogger().addHandler(handler)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


@override_settings(ROOT_URLCONF="ops.tests.failing_urls")
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/test-failures/view/", "the view failed on purpose"),
        ("/test-failures/api/", "the API failed on purpose"),
    ],
)
def test_unexpected_exception_gives_json_500_and_a_json_log_line_with_traceback(
    log_lines: io.StringIO, path: str, message: str
) -> None:
    client = Client(raise_request_exception=False)
    response = client.get(path, HTTP_X_REQUEST_ID="test-500-request")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "error": {"code": "internal_error", "message": "An internal error occurred."}
    }
    assert response["X-Request-ID"] == "test-500-request"
    assert message not in response.content.decode()  # the caller learns nothing of the internals

    entries = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    failures = [entry for entry in entries if "exception" in entry]
    assert len(failures) == 1, entries
    failure = failures[0]
    assert failure["request_id"] == "test-500-request"
    assert failure["level"] == "error"
    assert failure["exception"].startswith("Traceback (most recent call last):")
    assert f"RuntimeError: {message}" in failure["exception"]
    assert path in failure["event"]
    assert all(entry["request_id"] == "test-500-request" for entry in entries), entries
