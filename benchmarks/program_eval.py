"""Benchmark: how long the program takes to evaluate under mocks (figures, not a pass/fail)."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.unit.conftest import run_program  # noqa: E402


def main(rounds: int = 5) -> None:
    times, count = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        # Peers set, so the run prints figures rather than the 'hssAddress is empty' warnings.
        run = run_program({"hssAddress": "10.0.0.20", "pcrfAddress": "10.0.0.21"})
        times.append(time.perf_counter() - start)
        count = len(run.resources)
    print(
        f"program evaluation under mocks: {count} resources, "
        f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {rounds} runs"
    )


if __name__ == "__main__":
    main()
