"""Render tier: the real CoreDNS loads the Corefile and zones the IMS DNS ConfigMap ships.

The Corefile is the one a pod gets (port 1053 on every address, health :8080, ready :8181,
`forward . /etc/resolv.conf`); only the zone directory moves to a temporary one. It runs in a
network namespace (nothing else listens there; its resolv.conf names a loopback upstream that
never answers, so nothing leaves the machine). Loaded means: the ready plugin answers 200,
each zone answers its SOA with the rendered serial, and the log holds no error or warning.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from components.render import coredns as render_coredns
from tests import coredns_daemon
from tests.netns import NetNamespace, can_create_namespaces
from tests.profiles import stack_settings
from tests.tooling import missing

# What the Services' ClusterIP Outputs resolve to at `pulumi up`.
CLUSTER_IPS = {
    "pcscf": "10.96.0.11",
    "icscf": "10.96.0.12",
    "scscf": "10.96.0.13",
    "valkey": "10.96.0.14",
    "rtpengine": "10.96.0.15",
    "coredns": "10.96.0.53",
}
STACKS = {
    "default": lambda: stack_settings("default"),
    "mnc3-custom-domains": lambda: stack_settings(
        "mnc3", mcc="310", mnc="260", imsDomain="ims.example.net", epcDomain="epc.example.net"
    ),
    "epc-nested-in-ims-with-peers": lambda: stack_settings(
        "nested",
        imsDomain="ims.example.net",
        epcDomain="epc.ims.example.net",
        hssAddress="10.0.2.10",
        pcrfAddress="10.0.2.11",
    ),
}


@pytest.fixture(scope="module")
def netns():
    coredns_daemon.coredns_binary()
    why = can_create_namespaces()
    if why:
        missing("a network namespace", why)
    namespace = NetNamespace(f"corefile-{uuid.uuid4().hex[:8]}", hosts={}, nameserver="127.0.0.54").create()
    yield namespace
    namespace.destroy()


def soa_serial(netns, zone: str) -> int:
    with coredns_daemon.inside(netns):
        response = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=1053, timeout=2)
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    return response.answer[0][0].serial


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_coredns_loads_the_shipped_corefile_and_zones(stack, netns, tmp_path: Path):
    settings = STACKS[stack]()
    files = render_coredns.render(settings, CLUSTER_IPS, zone_dir=str(tmp_path))
    corefile = coredns_daemon.write_files(tmp_path, files)
    daemon = coredns_daemon.start(corefile, ready_url="http://127.0.0.1:8181/ready", netns=netns)
    try:
        for domain in (settings.ims_domain, settings.epc_domain):
            serial = soa_serial(netns, domain)
            assert f" {serial} " in files[f"db.{domain}"], domain
        log = daemon.log()
    finally:
        daemon.stop()
    # The loop plugin's start-up probe goes upstream, and nothing answers there (by design).
    problems = [
        line
        for line in log.splitlines()
        if ("[ERROR]" in line or "[WARNING]" in line) and not (" HINFO: " in line and "127.0.0.54:53" in line)
    ]
    assert not problems, log
    print(f"\n{stack}: CoreDNS ready {daemon.startup_seconds * 1000:.0f} ms after start")


def test_a_broken_zone_is_reported_so_this_check_can_fail(netns, tmp_path: Path):
    settings = STACKS["default"]()
    files = render_coredns.render(settings, CLUSTER_IPS, zone_dir=str(tmp_path))
    zone = f"db.{settings.ims_domain}"
    files[zone] = files[zone].replace(" IN A 10.96.0.11", " IN A 10.96.0.311")
    corefile = coredns_daemon.write_files(tmp_path, files)
    # CoreDNS refuses to start on a zone it cannot parse, naming the file and the line.
    with pytest.raises(RuntimeError, match="coredns exited") as error:
        coredns_daemon.start(corefile, ready_url="http://127.0.0.1:8181/ready", netns=netns, timeout=5)
    assert "plugin/file: failed to parse file" in str(error.value) and '"10.96.0.311"' in str(error.value)


def test_a_broken_corefile_stops_coredns(netns, tmp_path: Path):
    settings = STACKS["default"]()
    files = render_coredns.render(settings, CLUSTER_IPS, zone_dir=str(tmp_path))
    files["Corefile"] = files["Corefile"].replace("forward . /etc/resolv.conf", "forward .")
    corefile = coredns_daemon.write_files(tmp_path, files)
    with pytest.raises(RuntimeError, match="coredns exited"):
        coredns_daemon.start(corefile, ready_url="http://127.0.0.1:8181/ready", netns=netns, timeout=5)
