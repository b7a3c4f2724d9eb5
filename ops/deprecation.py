"""Headers that announce a deprecated HTTP API: `Deprecation` (RFC 9745), `Sunset` (RFC 8594) and a
`Link` to the notice (RFC 8288), and the parsing of the moments they name (settings, plan files)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime


def moment_parse(value: str) -> datetime:
    """An HTTP-date ("Tue, 01 Jun 2027 00:00:00 GMT") or an ISO 8601 date-time with its offset
    ("2027-06-01T00:00:00Z") as an aware UTC datetime; ValueError with a readable reason otherwise."""
    text = value.strip()
    moment: datetime | None = None
    if text[:1].isdigit():
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            moment = None
    if moment is None:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"{value!r} is neither an HTTP-date nor an ISO 8601 date-time") from exc
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (end it with Z, +00:00 or GMT)")
    return moment.astimezone(UTC)


def http_date(moment: datetime) -> str:
    """IMF-fixdate, the form HTTP headers carry dates in."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


@dataclass(frozen=True)
class Deprecation:
    """A deprecated API: since when, until when it answers, and where its notice is."""

    deprecated_at: datetime
    sunset: datetime
    link: str

    def headers(self) -> dict[str, str]:
        return {
            # RFC 9745: a Structured Fields Date, "@" and Unix seconds.
            "Deprecation": f"@{int(self.deprecated_at.timestamp())}",
            "Sunset": http_date(self.sunset),
            "Link": f'<{self.link}>; rel="deprecation"',
        }

    def past_sunset(self, now: datetime) -> bool:
        return now >= self.sunset
