"""The deprecation headers' exact forms (RFC 9745, RFC 8594, RFC 8288) and the dates they read."""

from datetime import UTC, datetime

import pytest

from ops.deprecation import Deprecation, http_date, moment_parse


def test_headers_have_the_forms_the_rfcs_give() -> None:
    deprecation = Deprecation(
        deprecated_at=datetime(2026, 12, 1, tzinfo=UTC),
        sunset=datetime(2027, 6, 1, tzinfo=UTC),
        link="https://docs.example.com/notice",
    )
    assert deprecation.headers() == {
        "Deprecation": "@1796083200",
        "Sunset": "Tue, 01 Jun 2027 00:00:00 GMT",
        "Link": '<https://docs.example.com/notice>; rel="deprecation"',
    }
    assert not deprecation.past_sunset(datetime(2027, 5, 31, 23, 59, tzinfo=UTC))
    assert deprecation.past_sunset(datetime(2027, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    "text",
    [
        "2027-06-01T00:00:00Z",
        "2027-06-01T02:00:00+02:00",
        "Tue, 01 Jun 2027 00:00:00 GMT",
        " 2027-06-01T00:00:00z ",
    ],
)
def test_a_moment_is_iso_8601_with_an_offset_or_an_http_date(text: str) -> None:
    assert moment_parse(text) == datetime(2027, 6, 1, tzinfo=UTC)
    assert http_date(moment_parse(text)) == "Tue, 01 Jun 2027 00:00:00 GMT"


@pytest.mark.parametrize("text", ["2027-06-01", "2027-06-01T00:00:00", "soon", "", "Tue, 01 Jun 2027"])
def test_a_moment_without_a_zone_or_not_a_date_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        moment_parse(text)
