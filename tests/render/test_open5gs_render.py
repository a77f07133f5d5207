"""Render tier: Debian's freeDiameterd (1.2.1) loads the freeDiameter .conf files the HSS, PCRF and
SMF (PGW) ConfigMaps ship, and sets up a connection to each of their Diameter peers.

open5gs links its own freeDiameter (r1.5.0), which the test machines cannot build; 1.2.1 accepts
every keyword the rendered files use. Only the extension directory points at Debian's (the same
path, /usr/lib/freeDiameter, as in the image). Each daemon runs in its own network namespace
shaped like a pod: loopback plus an eth0 with a pod address (a veth pair kept inside the
namespace), a hosts file that resolves the peers' Diameter identities as the IMS DNS does, and
no other resolver. Loaded means: "daemon initialized", no ERROR line, and for every peer the
rendered file names, a prepared connection (its identity resolved to the published address).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from components.render import open5gs as render_open5gs
from tests.netns import NetNamespace, can_create_namespaces
from tests.profiles import stack_settings
from tests.tooling import require_binary

POD_ADDRESS = "10.244.0.5"
STACKS = {
    "default": lambda: stack_settings("default"),
    "rx-off": lambda: stack_settings("rxoff", pcscfRx=False),
    "mnc3-custom-domains-fixed-addresses": lambda: stack_settings(
        "mnc3", mcc="310", mnc="260", imsDomain="ims.example.net", epcDomain="epc.example.net",
        pcscfAddress="10.96.0.11", icscfAddress="10.96.0.12", scscfAddress="10.96.0.13",
        hssAddress="10.96.0.20", pcrfAddress="10.96.0.21", pgwAddress="10.96.0.22",
    ),
}


def _pod_namespace(peers: dict[str, str]) -> NetNamespace:
    ns = NetNamespace(f"o5fd-{uuid.uuid4().hex[:8]}", peers).create()
    for argv in (
        ["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
        ["addr", "add", f"{POD_ADDRESS}/16", "dev", "eth0"],
        ["link", "set", "eth0", "up"],
        ["link", "set", "eth1", "up"],
    ):
        subprocess.run(["ip", "-n", ns.name, *argv], check=True, capture_output=True, text=True)
    return ns


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("nf", ["hss", "pcrf", "smf"])
def test_freediameterd_loads_the_rendered_conf_and_prepares_every_peer(stack, nf, tmp_path: Path):
    freediameterd = require_binary("freeDiameterd", "debian")
    why = can_create_namespaces()
    if why:
        pytest.skip(why)
    settings = STACKS[stack]()
    conf = tmp_path / f"{nf}.conf"
    conf.write_text(render_open5gs.freediameter_conf(settings, nf), encoding="utf-8")
    peers = render_open5gs.diameter_peers(settings, nf)
    assert peers, f"{nf} has no Diameter peer"
    # The IMS DNS answers each identity with the Service address (here: one per peer on the pod network).
    published = {identity: address or f"10.244.1.{i}" for i, (identity, address) in enumerate(peers, start=10)}
    ns = _pod_namespace(published)
    log = tmp_path / "freediameterd.log"
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(ns.prefix() + [freediameterd, "-c", str(conf), "-dd"], stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                text = log.read_text(errors="replace")
                if "daemon initialized" in text and all(f"connection parameters to peer {p}" in text for p in published):
                    break
                time.sleep(0.2)
            text = log.read_text(errors="replace")
            assert proc.poll() is None, f"freeDiameterd exited {proc.returncode}:\n{text[-3000:]}"
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        ns.destroy()
    assert "freeDiameterd daemon initialized" in text, text[-3000:]
    assert f"Local server address(es): {POD_ADDRESS}" in text, text[-3000:]
    errors = [line for line in text.splitlines() if " ERROR " in line or "FATAL" in line]
    assert not errors, "\n".join(errors)
    for identity in published:
        assert f"Prepared 1 sets of connection parameters to peer {identity}" in text, (identity, text[-3000:])
    for name in render_open5gs.DICTIONARIES:
        assert f"{render_open5gs.EXTENSION_DIR}/{name}.fdx'[(no config file)], loaded" in text, name
