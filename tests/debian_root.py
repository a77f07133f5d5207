"""Run a program of the Debian 13 root: the Kamailio, Valkey, rtpengine and SIPp versions the
images ship (versions.env), on this Debian 12 machine.

`scripts/debian13-root.sh` makes the root once (debootstrap, cached beside the Go tools). Each
command here runs as

    [ip netns exec NS] unshare --mount --propagation private sh in-debian-root.sh ROOT USER argv

which, in a mount namespace of its own, binds the host's /tmp (where the tests write configs,
logs and scenarios), /dev and the current /etc/resolv.conf and /etc/hosts (inside a test
network namespace those are the namespace's own) into the root, mounts a private /proc and
/run, and execs `chroot ROOT argv`. Every exec keeps the PID: the PID a test holds is the
daemon's. The mounts live and die with that mount namespace, so nothing is left on the host
when the daemon ends, whatever way it ends.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from tests.tooling import ROOT as REPO
from tests.tooling import TOOLS_DIR, missing

SCRIPT = REPO / "scripts" / "debian13-root.sh"
WRAPPER = Path(__file__).with_name("in-debian-root.sh")
HOW_TO_GET = "run: bash scripts/debian13-root.sh (as root; the test command does it)"


def _root_path() -> Path:
    """Where scripts/debian13-root.sh keeps the root of this checkout's package list."""
    env = {**os.environ, "IMS_CORE_TOOLS": str(TOOLS_DIR)}
    out = subprocess.run(["bash", str(SCRIPT), "--path"], capture_output=True, text=True, check=True, env=env)
    return Path(out.stdout.strip())


DEBIAN_ROOT = _root_path()


def require() -> Path:
    """The root's path; skips (fails under CI=true) when it has not been made."""
    if not (DEBIAN_ROOT / "usr" / "sbin" / "kamailio").exists():
        missing(f"the Debian 13 root ({DEBIAN_ROOT})", HOW_TO_GET)
    return DEBIAN_ROOT


def command(argv: list[str], *, user: str | None = None, pid_namespace: bool = False) -> list[str]:
    """`argv` (paths inside the root, e.g. ["kamailio", "-c", ...]) run from the root.

    `user` ("65532:65532") drops privileges at the chroot, after the mounts are made.
    `pid_namespace` runs it as PID 1 of a PID namespace of its own, as in a container: its
    processes get the same ids at every start (the PID held is then unshare's; the process group
    is still the daemon's). Prefix with a namespace's `prefix()` to run it inside that network
    namespace.
    """
    root = require()
    pid = ["--pid", "--fork", "--kill-child"] if pid_namespace else []
    return ["unshare", "--mount", *pid, "--propagation", "private", "sh", str(WRAPPER), str(root), user or "", *argv]


def has(path_in_root: str) -> bool:
    return (DEBIAN_ROOT / path_in_root.lstrip("/")).exists()


@cache
def package_version(package: str) -> str:
    """The Debian version of a package in the root (e.g. "6.0.1-1")."""
    root = require()
    out = subprocess.run(
        ["chroot", str(root), "dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
    ).stdout
    return out.split(":", 1)[-1]


def wanted_minors() -> dict[str, str]:
    """versions.env as a dict (KAMAILIO_MINOR -> "6.0", ...)."""
    values = {}
    for line in (REPO / "versions.env").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values
