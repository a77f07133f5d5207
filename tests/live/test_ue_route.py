"""Live: the rendered UE-pool return route (components/render/ue_route.py) on a two-node model.

Five network namespaces laid out as kind (kindnet) lays out a cluster: two nodes on one link
(172.18.0.0/24), each with its pod CIDR routed to the other node; on node 1 the PGW pod, on
node 2 a P-CSCF pod, each pod on a veth with a /32 host route on its node, as kindnet makes
them. The PGW pod holds a UE address of `ueImsPool` on a TUN device, as upfd's is. The rendered script runs on both nodes with the PGW pod's address, as dev-up.sh
runs it with `docker exec`.

What a user would notice: before, the P-CSCF cannot reach the UE address (its node has no
route); after, a TCP connection from the P-CSCF pod to the UE address completes (SYN there,
SYN-ACK back), and each node's route is the one the script says. Everything stays inside the
test namespaces.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from components.render import ue_route
from tests.netns import NetNamespace, can_create_namespaces
from tests.tooling import missing

PGW_POD, PCSCF_POD = "10.244.0.5", "10.244.1.7"
NODE1, NODE2 = "172.18.0.2", "172.18.0.3"


def sh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20)


def must(*argv: str) -> str:
    result = sh(*argv)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"
    return result.stdout


@pytest.fixture
def cluster(live_settings):
    reason = can_create_namespaces()
    if reason:
        missing(reason, "run the live tier as root (CI does)")
    tag = os.getpid() % 100000
    names = {role: f"ue{role}{tag}" for role in ("n1", "n2", "pgw", "pcscf")}
    spaces = {role: NetNamespace(name, hosts={}).create() for role, name in names.items()}
    ns = {role: space.prefix() for role, space in spaces.items()}
    try:
        for node in ("n1", "n2"):
            must(*ns[node], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        # The nodes' link.
        must("ip", "link", "add", f"e1{tag}", "netns", names["n1"], "type", "veth", "peer", "name", f"e2{tag}", "netns", names["n2"])
        for node, dev, address in (("n1", f"e1{tag}", NODE1), ("n2", f"e2{tag}", NODE2)):
            must(*ns[node], "ip", "addr", "add", f"{address}/24", "dev", dev)
            must(*ns[node], "ip", "link", "set", dev, "up")
        must(*ns["n1"], "ip", "route", "add", "10.244.1.0/24", "via", NODE2)
        must(*ns["n2"], "ip", "route", "add", "10.244.0.0/24", "via", NODE1)
        # A pod on a node, as kindnet wires it.
        for pod, node, address, gateway in (("pgw", "n1", PGW_POD, "10.244.0.1"), ("pcscf", "n2", PCSCF_POD, "10.244.1.1")):
            host_dev = f"v{pod}{tag}"
            must("ip", "link", "add", host_dev, "netns", names[node], "type", "veth", "peer", "name", "eth0", "netns", names[pod])
            must(*ns[pod], "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            must(*ns[pod], "ip", "link", "set", "eth0", "up")
            must(*ns[pod], "ip", "route", "add", "default", "via", gateway)
            must(*ns[node], "ip", "addr", "add", f"{gateway}/32", "dev", host_dev)
            must(*ns[node], "ip", "link", "set", host_dev, "up")
            must(*ns[node], "ip", "route", "add", address, "dev", host_dev, "scope", "host")
        # A UE address of the ims pool behind the PGW, on a TUN device like the one upfd reads.
        must(*ns["pgw"], "ip", "tuntap", "add", "name", "ogstun2", "mode", "tun")
        must(*ns["pgw"], "ip", "addr", "add", ue_address(live_settings) + "/32", "dev", "ogstun2")
        must(*ns["pgw"], "ip", "link", "set", "ogstun2", "up")
        yield ns, spaces
    finally:
        for space in spaces.values():
            space.destroy()


def ue_address(settings) -> str:
    (pool,) = ue_route.routed_pools(settings)
    network = pool.split("/")[0].rsplit(".", 2)[0]
    return f"{network}.0.7"


def reaches(spaces: dict[str, NetNamespace], address: str, port: int = 5060) -> bool:
    """A TCP connection from the P-CSCF pod to `address` in the PGW pod completes: the SYN went
    there and the SYN-ACK came back (the round trip a SIP answer over TCP needs)."""
    with spaces["pgw"].entered():
        server = socket.create_server((address, port))
    try:
        with spaces["pcscf"].entered():
            client = socket.socket()
        client.settimeout(1.5)
        try:
            client.connect((address, port))
            return True
        except OSError:
            return False
        finally:
            client.close()
    finally:
        server.close()


def test_the_rendered_route_brings_pcscf_answers_to_a_ue_behind_the_pgw(live_settings, cluster):
    ns, spaces = cluster
    ue = ue_address(live_settings)
    assert not reaches(spaces, ue), "the UE address answered before any route was set"
    script = ue_route.route_script(live_settings)
    for node in ("n1", "n2"):
        result = subprocess.run(
            [*ns[node], "sh", "-s", "--", PGW_POD], input=script, capture_output=True, text=True, timeout=20
        )
        assert result.returncode == 0, result.stderr
    (pool,) = ue_route.routed_pools(live_settings)
    n1 = must(*ns["n1"], "ip", "-o", "route", "show", pool)
    n2 = must(*ns["n2"], "ip", "-o", "route", "show", pool)
    assert f"via {PGW_POD} dev vpgw" in n1 and "onlink" in n1, n1  # on-link to the pod on its own node
    assert f"via {NODE1} dev e2" in n2, n2  # towards the PGW pod's node elsewhere
    assert reaches(spaces, ue), "no answer from the UE address behind the PGW"
    # Idempotent: a second run changes nothing and still works.
    again = subprocess.run([*ns["n2"], "sh", "-s", "--", PGW_POD], input=script, capture_output=True, text=True, timeout=20)
    assert again.returncode == 0 and must(*ns["n2"], "ip", "-o", "route", "show", pool) == n2
