"""API keys (issued hashed, the legacy hash) and the shared per-key rate counter."""

import secrets
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from mes_pricing.models import ApiKey, hash_api_key
from mes_pricing.rate_limits import Rate, rate_limit_hit

pytestmark = pytest.mark.django_db(databases=["default", "pricing"])


def test_a_key_is_printed_once_and_stored_only_as_its_sha256() -> None:
    out = StringIO()
    call_command("pricing_api_key", "--name", "acme", stdout=out, stderr=StringIO())
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(name="acme")
    assert len(raw) == 43 and key.key_hash == hash_api_key(raw) and key.prefix == raw[:8]
    assert raw not in (key.key_hash, key.prefix)


def test_an_existing_name_is_refused_unless_replaced() -> None:
    call_command("pricing_api_key", "--name", "acme", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="--replace"):
        call_command("pricing_api_key", "--name", "acme", stdout=StringIO(), stderr=StringIO())
    old = ApiKey.objects.get(name="acme").key_hash
    call_command("pricing_api_key", "--name", "acme", "--replace", stdout=StringIO(), stderr=StringIO())
    assert ApiKey.objects.get(name="acme").key_hash != old


def test_rates_read_like_drf() -> None:
    assert Rate.parse("6000/min") == Rate(requests=6000, seconds=60)
    assert Rate.parse("1000/s") == Rate(requests=1000, seconds=1)


def test_the_counter_allows_exactly_the_rate_then_says_how_long_to_wait() -> None:
    subject = f"unit-{secrets.token_hex(8)}"
    verdicts = [rate_limit_hit(subject=subject, rate=Rate(requests=3, seconds=60)) for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert 1 <= verdicts[-1].wait_seconds <= 60
