"""The architecture contracts of pyproject.toml ([tool.importlinter]) hold: a toolkit module that
imports a domain package, or a lower toolkit layer that imports a higher one, fails the suite."""

from __future__ import annotations

import subprocess

from ops.process_group import PROJECT_ROOT, bin_command


def test_import_contracts_are_kept() -> None:
    result = subprocess.run(
        bin_command("lint-imports", "--no-cache"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
