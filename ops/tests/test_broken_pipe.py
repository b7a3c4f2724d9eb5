"""A command whose reader stops reading (`manage.py ... | head`) ends quietly, as Unix tools do."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_closed_pipe_ends_a_command_without_a_traceback_or_a_critical_log_line() -> None:
    command = [
        sys.executable,
        str(ROOT / "manage.py"),
        "shell",
        "--verbosity",
        "0",
        "-c",
        "for _ in range(200_000): print('x' * 50)",
    ]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == b"x" * 50 + b"\n"
        process.stdout.close()  # what `head -1` does once it has its line
        stderr = process.stderr.read()
        assert process.wait(timeout=60) == 141
    assert stderr == b"", stderr[:2000]
