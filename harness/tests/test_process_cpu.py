"""CPU time of a process group, read from /proc, counts the work of the group's processes."""

from harness.process_cpu import process_group_cpu_seconds
from harness.waiting import wait_until
from ops.process_group import ManagedProcess, python_command

# Half a second of CPU, then idle: the group's total must reach it and stay near it.
BUSY = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ntime.sleep(30)"


def test_counts_the_cpu_a_group_spent() -> None:
    busy = ManagedProcess("busy", python_command("-c", BUSY)).start()
    try:
        spent = wait_until(
            lambda: (seconds := process_group_cpu_seconds(busy.pid)) >= 0.5 and seconds, seconds=20
        )
        assert spent < 1.5
    finally:
        busy.stop()


def test_a_group_with_no_live_process_spent_nothing() -> None:
    assert process_group_cpu_seconds(2**22 + 7) == 0.0
