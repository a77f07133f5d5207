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
