"""Live IMS DNS: the real CoreDNS serves the rendered Corefile and zones on loopback.

Everything runs in a throw-away network namespace that has only a loopback interface, so no
query can leave the machine. The IMS DNS listens on the loopback profile's CoreDNS address
(127.0.0.53:53); "the cluster DNS" it forwards other names to is a second CoreDNS on
127.0.0.54:53 that knows only cluster.local, named through a resolv.conf file exactly as the
pod's /etc/resolv.conf names kube-dns.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from components.render import coredns as render_coredns
from tests import coredns_daemon
from tests.figures import record
from tests.netns import NetNamespace, can_create_namespaces
from tests.profiles import loopback_settings
from tests.tooling import missing

UPSTREAM = "127.0.0.54"
CLUSTER_NAME = "kubernetes.default.svc.cluster.local"
CLUSTER_ADDRESS = "10.96.0.1"
UPSTREAM_COREFILE = f"""cluster.local:53 {{
    bind {UPSTREAM}
    file {{dir}}/db.cluster.local
    log
}}
.:53 {{
    bind {UPSTREAM}
    log
    health {UPSTREAM}:8080
    ready {UPSTREAM}:8181
}}
"""
UPSTREAM_ZONE = f"""$ORIGIN cluster.local.
@ 60 IN SOA ns.cluster.local. hostmaster.cluster.local. 1 3600 600 86400 60
@ 60 IN NS ns.cluster.local.
ns 60 IN A {UPSTREAM}
{CLUSTER_NAME}. 60 IN A {CLUSTER_ADDRESS}
"""


class ImsDns:
    def __init__(self, settings, netns, directory: Path, daemon, upstream):
        self.settings = settings
        self.netns = netns
        self.directory = directory
        self.daemon = daemon
        self.upstream = upstream
        self.address = settings.nf("coredns").address
        self.startup_log = daemon.log()

    def query(self, name: str, rdtype: str, *, tcp: bool = False) -> dns.message.Message:
        request = dns.message.make_query(name, rdtype)
        with coredns_daemon.inside(self.netns):
            send = dns.query.tcp if tcp else dns.query.udp
            return send(request, self.address, port=render_coredns.DNS_PORT, timeout=2)

    def answer(self, name: str, rdtype: str, **kwargs) -> list:
        response = self.query(name, rdtype, **kwargs)
        assert response.rcode() == dns.rcode.NOERROR, (name, rdtype, dns.rcode.to_text(response.rcode()))
        return [rr for rrset in response.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rr in rrset]


@pytest.fixture(scope="module")
def ims_dns(tmp_path_factory):
    coredns_daemon.coredns_binary()
    why = can_create_namespaces()
    if why:
        missing("a network namespace", why)
    settings = loopback_settings()
    directory = tmp_path_factory.mktemp("ims-dns")
    upstream_dir = directory / "upstream"
    upstream_dir.mkdir()
    (upstream_dir / "db.cluster.local").write_text(UPSTREAM_ZONE, encoding="utf-8")
    (upstream_dir / "Corefile").write_text(UPSTREAM_COREFILE.replace("{dir}", str(upstream_dir)), encoding="utf-8")

    with contextlib.ExitStack() as stack:
        netns = NetNamespace(f"imsdns-{uuid.uuid4().hex[:8]}", hosts={}).create()
        stack.callback(netns.destroy)
        upstream = coredns_daemon.start(
            upstream_dir / "Corefile", ready_url=f"http://{UPSTREAM}:8181/ready", netns=netns
        )
        stack.callback(upstream.stop)
        daemon = stack.enter_context(
            coredns_daemon.serving(settings, directory / "zones", netns=netns, upstream=UPSTREAM)
        )
        record(f"live: IMS DNS ready {daemon.startup_seconds * 1000:.0f} ms after start: {' '.join(daemon.argv)}")
        yield ImsDns(settings, netns, directory / "zones", daemon, upstream)


def test_every_nf_fqdn_resolves_to_its_address(ims_dns):
    for name, nf in ims_dns.settings.nfs.items():
        assert nf.address, f"the loopback profile gives {name} an address"
        response = ims_dns.query(nf.fqdn, "A")
        assert response.flags & dns.flags.AA, f"{nf.fqdn}: not answered from our zone"
        assert [rr.address for rr in ims_dns.answer(nf.fqdn, "A")] == [nf.address], nf.fqdn


def test_ims_domain_resolves_naptr_then_srv_then_a_to_the_icscf(ims_dns):
    """What a SIP client does per RFC 3263 with only the home domain (e.g. a UE, or a peer network)."""
    domain = ims_dns.settings.ims_domain
    naptrs = sorted(ims_dns.answer(domain, "NAPTR"), key=lambda r: (r.order, r.preference))
    assert [(r.service, r.flags) for r in naptrs] == [(b"SIP+D2U", b"s"), (b"SIP+D2T", b"s")]
    icscf = ims_dns.settings.nf("icscf")
    for naptr, tcp in zip(naptrs, (False, True), strict=True):
        (srv,) = ims_dns.answer(naptr.replacement.to_text(), "SRV", tcp=tcp)
        assert (srv.port, srv.target.to_text()) == (5060, f"{icscf.fqdn}.")
        (a,) = ims_dns.answer(srv.target.to_text(), "A", tcp=tcp)
        assert a.address == icscf.address


def test_each_cscf_has_sip_srv_over_udp_and_tcp(ims_dns):
    for role in ("pcscf", "icscf", "scscf"):
        nf = ims_dns.settings.nf(role)
        for transport in ("udp", "tcp"):
            response = ims_dns.query(f"_sip._{transport}.{nf.fqdn}", "SRV")
            (srv,) = [rr for rrset in response.answer for rr in rrset]
            assert (srv.priority, srv.port, srv.target.to_text()) == (0, 5060, f"{nf.fqdn}.")
            # The target's address rides along, saving the CSCF a second query.
            glue = {rr.address for rrset in response.additional if rrset.rdtype == dns.rdatatype.A for rr in rrset}
            assert glue == {nf.address}


def test_epc_zone_serves_the_diameter_peers(ims_dns):
    epc = ims_dns.settings.epc_domain
    for peer in ("hss", "pcrf"):
        nf = ims_dns.settings.nf(peer)
        assert nf.fqdn == f"{peer}.{epc}"
        assert [rr.address for rr in ims_dns.answer(nf.fqdn, "A")] == [nf.address]


def test_unknown_names_in_our_zones_are_authoritative_nxdomain(ims_dns):
    before = ims_dns.upstream.log()
    for domain in (ims_dns.settings.ims_domain, ims_dns.settings.epc_domain):
        response = ims_dns.query(f"no-such-nf.{domain}", "A")
        assert response.rcode() == dns.rcode.NXDOMAIN
        assert response.flags & dns.flags.AA
    time.sleep(0.1)
    assert ims_dns.upstream.log() == before, "a name in our zones was sent upstream"


def test_soa_serial_is_the_rendered_one(ims_dns):
    for domain in (ims_dns.settings.ims_domain, ims_dns.settings.epc_domain):
        (soa,) = ims_dns.answer(domain, "SOA")
        zone = (ims_dns.directory / f"db.{domain}").read_text()
        assert f" {soa.serial} " in zone


def test_other_names_are_forwarded_to_the_cluster_dns(ims_dns):
    assert [rr.address for rr in ims_dns.answer(CLUSTER_NAME, "A")] == [CLUSTER_ADDRESS]
    assert CLUSTER_NAME in ims_dns.upstream.log()


def test_names_the_upstream_refuses_fail_without_leaving_the_machine(ims_dns):
    name = f"ims-dns-test-{uuid.uuid4().hex[:6]}.example.com"
    response = ims_dns.query(name, "A")
    assert response.rcode() in (dns.rcode.REFUSED, dns.rcode.SERVFAIL)
    assert not response.answer
    # It went to our stand-in upstream (the only forward target, on loopback), which refused it.
    assert name in ims_dns.upstream.log()


def test_a_changed_address_is_served_after_the_zone_reload(ims_dns):
    """The zone follows an address change: a new serial makes CoreDNS's file plugin reload it."""
    settings = ims_dns.settings
    pcscf = settings.nf("pcscf")
    addresses = coredns_daemon.loopback_addresses(settings)
    moved = {**addresses, "pcscf": "127.0.0.111"}
    zone = f"db.{settings.ims_domain}"
    old_zone = (ims_dns.directory / zone).read_text()
    files = coredns_daemon.render_loopback(
        settings, ims_dns.directory, upstream=str(ims_dns.directory / "upstream-resolv.conf"), addresses=moved
    )
    assert files[zone] != old_zone
    coredns_daemon.write_files(ims_dns.directory, {zone: files[zone]})
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if [rr.address for rr in ims_dns.answer(pcscf.fqdn, "A")] == ["127.0.0.111"]:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"CoreDNS still serves the old pcscf address:\n{ims_dns.daemon.log()[-2000:]}")
        assert "Successfully reloaded zone" in ims_dns.daemon.log()
    finally:
        coredns_daemon.write_files(ims_dns.directory, {zone: old_zone})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and ims_dns.answer(pcscf.fqdn, "A")[0].address != pcscf.address:
            time.sleep(0.1)


def test_coredns_loaded_the_rendered_files_without_errors(ims_dns):
    log = ims_dns.startup_log
    assert "[ERROR]" not in log and "[WARNING]" not in log, log
