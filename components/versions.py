"""The minor versions the images ship and the tests run (versions.env at the repository root).

One file, read here for the image builds (as Dockerfile build arguments), by
scripts/debian13-root.sh for the test root, and by the unit tests that keep the two together.
"""

from __future__ import annotations

from functools import lru_cache

from .settings import ROOT

VERSIONS_FILE = ROOT / "versions.env"


@lru_cache(maxsize=1)
def minors() -> dict[str, str]:
    """KEY -> value of every `KEY=value` line of versions.env (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, sep, value = line.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"{VERSIONS_FILE}: not KEY=value: {line!r}")
            values[key.strip()] = value.strip()
    return values
