"""Benchmark: the live core's registration rate, overload control, footprint and start-up
(figures, not pass/fail). Method: benchmarks/README.md.

Runs benchmarks/live/bench_core.py under pytest with the live tier's fixtures, so the
daemons, configs and namespace are the live tier's own. Needs root and the Debian 13 root,
like the live tier; prints why it did not run otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASETEMP = Path("/tmp/ims-core-bench")


def main() -> int:
    sys.path.insert(0, str(ROOT))
    args = [
        str(ROOT / "benchmarks" / "live" / "bench_core.py"),
        "-p", "tests.live.conftest", "-p", "no:cacheprovider",
        "-o", "python_files=bench_*.py", "-o", "python_functions=bench_*",
        "--rootdir", str(ROOT), "-q", "-s", "--no-header",
        # Its own temp dir (wiped at each run, kept after it: SIPp traces and daemon logs).
        f"--basetemp={BASETEMP}", *sys.argv[1:],
    ]
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main())
