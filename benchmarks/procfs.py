"""CPU time and peak memory of processes, read from /proc (Linux), for the benchmark report."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> int | None:
    """A `/proc/<pid>/status` memory field in KiB (`VmHWM` = peak resident set), None once the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), None once the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": fields[0] is field 3, the state
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def engine_pids() -> dict[str, int]:
    """The embedded engines are children of this process: find them to charge CPU time to each.

    Docker or environment engines are not our children; then nothing is found and their CPU is not shown.
    """
    found: dict[str, int] = {}
    for children in Path("/proc/self/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for pid in children.read_text().split():
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                if b"secantus" in command:
                    found["mongodb"] = int(pid)
                elif b"tansu" in command or b"kafka.Kafka" in command:
                    found["kafka"] = int(pid)
    return found


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu for name, pid in pids.items() if (cpu := cpu_seconds(pid)) is not None}


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process spent between two snapshots (those present in both)."""
    return {name: after[name] - before[name] for name in after if name in before}
