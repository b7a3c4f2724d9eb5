"""A process started niced runs at that niceness (and its children with it); the default is the
starter's own, so what answers requests keeps the normal priority."""

from __future__ import annotations

import os

from ops.process_group import ManagedProcess, python_command

PRINT_NICENESS = "import os, subprocess, sys; print(os.nice(0)); " + (
    "print(subprocess.run([sys.executable, '-c', 'import os; print(os.nice(0))'],"
    " capture_output=True, text=True).stdout.strip())"
)


def _niceness(tmp_path, **kwargs) -> list[int]:
    log = tmp_path / "out.log"
    process = ManagedProcess("probe", python_command("-c", PRINT_NICENESS), {}, log, **kwargs).start()
    assert process.popen is not None
    assert process.popen.wait(timeout=30) == 0, log.read_text()
    return [int(line) for line in log.read_text().split()]


def test_a_niced_process_and_its_children_run_at_that_niceness(tmp_path) -> None:
    own = os.nice(0)
    assert _niceness(tmp_path, nice=7) == [own + 7, own + 7]


def test_by_default_a_process_keeps_the_starters_niceness(tmp_path) -> None:
    assert _niceness(tmp_path) == [os.nice(0)] * 2
