"""The daemons the render and live tiers run are of the minors the images ship (versions.env).

Asked of the binaries themselves, in the Debian 13 root the tiers run them from, not of a
package list: a root made from another suite, or a binary that is not the one the tests start,
fails here.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from components.versions import minors
from tests import debian_root

VERSION_OF = {
    # versions.env key: (argv in the root, pattern whose group 1 is major.minor)
    "KAMAILIO_MINOR": (["kamailio", "-v"], r"version: kamailio (\d+\.\d+)\.\d+"),
    "VALKEY_MINOR": (["valkey-server", "--version"], r"v=(\d+\.\d+)\.\d+"),
    "RTPENGINE_MINOR": (["rtpengine", "--version"], r"Version: (\d+\.\d+)\.\d+"),
    "SIPP_MINOR": (["sipp", "-v"], r"SIPp v(\d+\.\d+)\.\d+"),
}


@pytest.mark.parametrize("key", sorted(VERSION_OF))
def test_the_tiers_run_the_shipped_minor(key):
    argv, pattern = VERSION_OF[key]
    result = subprocess.run(debian_root.command(argv), capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    found = re.search(pattern, output)
    assert found, f"{argv[0]} printed no version:\n{output}"
    assert found.group(1) == minors()[key], f"{argv[0]} is {found.group(1)}, versions.env says {minors()[key]}"


def test_running_from_the_root_leaves_no_mount_on_the_host():
    """The binds into the root live in the command's own mount namespace and die with it."""
    root = str(debian_root.require())

    def mounts_under_root() -> list[str]:
        with open("/proc/self/mountinfo", encoding="utf-8") as info:
            return [line for line in info if f" {root}/" in line or f" {root} " in line]

    before = mounts_under_root()
    inside = subprocess.run(debian_root.command(["cat", "/proc/self/mountinfo"]), capture_output=True, text=True, timeout=30)
    assert inside.returncode == 0, inside.stderr
    # Inside, the binds were there (the host's /tmp as the root's /tmp, a private /proc and /run) ...
    mounted = {line.split()[4] for line in inside.stdout.splitlines()}
    assert {"/tmp", "/proc", "/run", "/dev"} <= mounted, sorted(mounted)
    # ... and on the host nothing under the root changed.
    assert mounts_under_root() == before == []
