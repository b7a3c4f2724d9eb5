"""Who a failed API-key attempt is counted against: the client address behind trusted proxies."""

import pytest
from django.test import override_settings

from ops.key_attempts import KeyAttempt, client_address


@override_settings(LEGACY_TRUSTED_PROXIES=["127.0.0.1/32", "10.0.0.0/8"])
@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("192.0.2.7", None, "192.0.2.7"),
        # Not a trusted proxy: its X-Forwarded-For is the client's own word.
        ("192.0.2.7", "198.51.100.1", "192.0.2.7"),
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        # A chain of trusted proxies: the right-most hop that is none of them.
        ("127.0.0.1", "198.51.100.1, 203.0.113.9, 10.1.2.3", "203.0.113.9"),
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        # Garbage in the header names no client: the nearest real hop stands for it.
        ("127.0.0.1", "nonsense", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.1, nonsense, 10.1.2.3", "10.1.2.3"),
        ("127.0.0.1", "", "127.0.0.1"),
    ],
)
def test_the_client_address_is_taken_from_trusted_proxies_only(
    peer: str, forwarded_for: str | None, client: str
) -> None:
    assert client_address(peer=peer, forwarded_for=forwarded_for) == client


def test_an_attempt_is_counted_against_the_stored_prefix_length_of_the_key() -> None:
    assert KeyAttempt.of(address="192.0.2.7", raw_key="abcdefghijkl").prefix == "abcdefgh"
