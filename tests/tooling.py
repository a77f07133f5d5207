"""How tests find the tools a tier needs, and what they do when one is missing.

Locally a missing tool skips the tier with a message that says how to get it; under CI=true
the same situation fails, because a tier that cannot run in CI proves nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS_DIR = Path(os.environ.get("IMS_CORE_TOOLS", Path.home() / ".cache" / "ims-core-tools"))
VENV_BIN = ROOT / ".venv" / "bin"

HOW_TO_GET = {
    "debian": "run: bash scripts/install-debian-packages.sh",
    "go": "run: bash scripts/bootstrap-tools.sh",
    "venv": "run: bash scripts/test.sh (it creates .venv from requirements-test.txt)",
}


def missing(what: str, how: str) -> None:
    message = f"{what} is missing; {HOW_TO_GET.get(how, how)}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


def require_binary(name: str, how: str) -> str:
    """Path of a tool: the Go tool cache first, then .venv/bin, then PATH."""
    for candidate in (TOOLS_DIR / "bin" / name, VENV_BIN / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    missing(name, how)
    raise AssertionError("unreachable")
