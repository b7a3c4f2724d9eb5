"""`manage.py credentials customer|staff|api-key`, run as a user runs it, issues credentials that
the running monolith lets in over HTTP."""

from __future__ import annotations

import os
import subprocess

import pytest
import requests

from ops.process_group import manage_command

# The test database is flushed after each test: the command commits its rows from another process.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# kind, the command's options, a route of that credential, how the credential is presented
KINDS = {
    "customer": (["--email", "Dana@Example.test"], "/shop/api/orders/", "Authorization", "Bearer {}"),
    "staff": (["--name", "dana"], "/crm/api/orders/", "Authorization", "Token {}"),
    "api-key": (["--name", "dana-partner"], "/mes/api/production-orders/", "X-API-Key", "{}"),
}


def credentials(live_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        manage_command("credentials", *args),
        env={**os.environ, **live_env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def issued(live_env: dict[str, str], *args: str) -> str:
    """The credential the command printed: stdout holds it alone, on one line."""
    result = credentials(live_env, *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].strip(), result.stdout
    return lines[0].strip()


def status_with(base_url: str, kind: str, credential: str) -> int:
    _, path, header, template = KINDS[kind]
    response = requests.get(base_url + path, headers={header: template.format(credential)}, timeout=10)
    return response.status_code


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_printed_credential_opens_its_api(legacy_stack, live_env: dict[str, str], kind: str) -> None:  # type: ignore[no-untyped-def]
    options = KINDS[kind][0]
    credential = issued(live_env, kind, *options)
    assert status_with(legacy_stack.base_url, kind, credential) == 200


@pytest.mark.parametrize("kind", ["customer", "staff"])
def test_customer_and_staff_get_the_same_token_again_until_rotated(  # type: ignore[no-untyped-def]
    legacy_stack, live_env: dict[str, str], kind: str
) -> None:
    options = KINDS[kind][0]
    first = issued(live_env, kind, *options)
    assert issued(live_env, kind, *options) == first
    rotated = issued(live_env, kind, *options, "--rotate")
    assert rotated != first
    assert status_with(legacy_stack.base_url, kind, first) == 401
    assert status_with(legacy_stack.base_url, kind, rotated) == 200


def test_an_api_key_is_shown_once_and_its_name_is_not_issued_twice(  # type: ignore[no-untyped-def]
    legacy_stack, live_env: dict[str, str]
) -> None:
    first = issued(live_env, "api-key", "--name", "acme")
    again = credentials(live_env, "api-key", "--name", "acme")
    assert again.returncode != 0 and again.stdout == ""
    assert "--rotate" in again.stderr, again.stderr
    assert status_with(legacy_stack.base_url, "api-key", first) == 200
    rotated = issued(live_env, "api-key", "--name", "acme", "--rotate")
    assert status_with(legacy_stack.base_url, "api-key", rotated) == 200
    assert status_with(legacy_stack.base_url, "api-key", first) == 401


def test_a_bad_email_is_refused_with_a_sentence(live_env: dict[str, str]) -> None:
    result = credentials(live_env, "customer", "--email", "not-an-email")
    assert result.returncode != 0 and result.stdout == ""
    assert "is not an email address" in result.stderr, result.stderr


def test_help_names_every_kind(live_env: dict[str, str]) -> None:
    result = credentials(live_env, "--help")
    assert result.returncode == 0, result.stderr
    for kind in KINDS:
        assert kind in result.stdout
