"""CPU time of the processes a benchmark measures, from /proc: unlike requests per second it
holds when the machine's cores are shared with others."""

from __future__ import annotations

import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after "pid (comm)"; fields[0] is the state."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None  # the process ended meanwhile
    return stat[stat.rindex(")") + 2 :].split()


def _cpu_ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def process_group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in the process group `pgid` (a server
    started by ops.process_group leads its own group, workers included)."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) and int(fields[2]) == pgid:
            ticks += _cpu_ticks(fields)
    return ticks / CLOCK_TICKS
