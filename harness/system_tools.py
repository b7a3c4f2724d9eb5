"""Programs the tests and benchmarks drive as real processes (wrk, nginx), found on PATH or in
/usr/sbin, else installed with apt-get where we may (root on Debian), as an operator would."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable


class ToolMissing(RuntimeError):
    """The program is not installed and could not be installed here."""


def tool_find(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin")


def _apt_get(*args: str) -> bool:
    run = subprocess.run(
        ["apt-get", *args],
        check=False,
        capture_output=True,
        timeout=300,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return run.returncode == 0


def tool_ensure(binary: str, *, package: str, say: Callable[[str], None] = print) -> str:
    """The path of `binary`, installing `package` when it is missing (the package lists are
    refreshed only when a plain install fails: a fresh machine has none)."""
    found = tool_find(binary)
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        raise ToolMissing(f"{binary} is not installed; install the {package} package")
    say(f"{binary} is missing: installing {package} with apt-get")
    if not _apt_get("install", "-y", "-q", package):
        _apt_get("update", "-q")
        _apt_get("install", "-y", "-q", package)
    found = tool_find(binary)
    if not found:
        raise ToolMissing(f"apt-get could not install {package}; install it to get {binary}")
    return found
