"""CPU and memory of the daemons under test, read from /proc.

A daemon is its process and every process it forked (Kamailio's workers); the test doubles are threads of the benchmark's own process.
Memory is PSS (proportional set size): Kamailio's workers share its shm pool, and RSS would
count those pages once per worker.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat(path: Path) -> list[str] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    # comm may hold spaces: fields start after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def tree_pids(pid: int) -> list[int]:
    """`pid` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry / "stat")
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def in_namespace(comm: str, netns_name: str) -> int | None:
    """PID of a process named `comm` in the network namespace `netns_name` (a daemon the live
    tier starts without handing out its PID, e.g. CoreDNS)."""
    try:
        target = os.stat(f"/run/netns/{netns_name}").st_ino
    except OSError:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == comm and os.stat(entry / "ns" / "net").st_ino == target:
                return int(entry.name)
        except OSError:
            continue
    return None


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = _stat(Path(f"/proc/{pid}/stat"))
        if fields:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def thread_cpu_seconds(prefix: str) -> float:
    """CPU of this process's threads whose name starts with `prefix` (a test double's)."""
    total = 0
    for thread in threading.enumerate():
        if thread.name.startswith(prefix) and thread.native_id:
            fields = _stat(Path(f"/proc/self/task/{thread.native_id}/stat"))
            if fields:
                total += int(fields[11]) + int(fields[12])
    return total / TICK


def pss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kb / 1024


class CpuMeter:
    """CPU seconds of named daemons (process trees) and test doubles (threads) over a span."""

    def __init__(self, groups: dict[str, int], thread_prefixes: dict[str, str]):
        """`groups`: name -> PID of a daemon (its forked processes count with it)."""
        self.groups = groups
        self.thread_prefixes = thread_prefixes
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def _now(self) -> dict[str, float]:
        values = {name: cpu_seconds(tree_pids(pid)) for name, pid in self.groups.items()}
        values.update({name: thread_cpu_seconds(prefix) for name, prefix in self.thread_prefixes.items()})
        return values

    def start(self) -> None:
        import time

        self._t0 = time.monotonic()
        self._start = self._now()

    def stop(self) -> tuple[dict[str, float], float]:
        """CPU seconds spent by each group since start(), and the wall seconds."""
        import time

        wall = time.monotonic() - self._t0
        end = self._now()
        return {name: end[name] - self._start.get(name, 0.0) for name in end}, wall
