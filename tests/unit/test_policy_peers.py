"""Who reaches the core through the rendered NetworkPolicies (issue: legitimate peers dropped).

SIP into the I-/S-CSCF from an application server on ISC (or a BGCF/MGCF/IBCF, another
network) and Diameter opened by an HSS or PCRF outside this stack's namespace are admitted
exactly when the stack names them (`sipPeer*`, `diameterPeer*`); by default only this stack's
own pods get in. Each answer comes from tests/unit/netpol.py, which applies the Kubernetes
NetworkPolicy semantics to the policies the program registers.
"""

from __future__ import annotations

import pytest

from components import policy
from components.render.kamailio import DIAMETER_PORT, MW_PORT, SIP_PORT
from components.settings import CSCF_ROLES
from tests.profiles import stack_settings
from tests.unit.conftest import run_program
from tests.unit.netpol import Policy, Source, admitted

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NS = "ims"
AS_POD = Source.pod("ims-as", {"app.kubernetes.io/name": "telephony-as"})
HSS_POD = Source.pod("open5gs", {"app.kubernetes.io/name": "open5gs-hssd"})
PCRF_POD = Source.pod("open5gs", {"app.kubernetes.io/name": "open5gs-pcrfd"})
IBCF = Source("192.0.2.7")


def reaches(run, role: str, port: int, protocol: str, src: Source) -> bool:
    policies = [Policy(r.inputs["metadata"]["namespace"], r.inputs["spec"]) for r in run.mocks.of_type(NETWORK_POLICY)]
    template = run.mocks.named(f"{role}-deployment").inputs["spec"]["template"]
    return admitted(policies, NS, template["metadata"]["labels"], port, protocol, src)


def own_pod(run, role: str) -> Source:
    """A pod of this stack's `role` (its pod template's labels, in the stack's namespace)."""
    labels = run.mocks.named(f"{role}-deployment").inputs["spec"]["template"]["metadata"]["labels"]
    return Source.pod(NS, labels)


@pytest.fixture(scope="module")
def default_run():
    run = run_program({})
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def peers_run():
    run = run_program(
        {
            "sipPeerNamespaces": ["ims-as"],
            "sipPeerCidrs": ["192.0.2.0/24"],
            "diameterPeerNamespaces": ["open5gs"],
        }
    )
    assert run.error is None, run.error
    return run


@pytest.mark.parametrize("role", ["icscf", "scscf"])
@pytest.mark.parametrize("protocol", ["UDP", "TCP"])
def test_an_application_server_in_another_namespace_reaches_the_core_only_when_named(default_run, peers_run, role, protocol):
    assert not reaches(default_run, role, SIP_PORT, protocol, AS_POD)
    assert reaches(peers_run, role, SIP_PORT, protocol, AS_POD)
    # The stack's own CSCFs keep their way in either way.
    for run in (default_run, peers_run):
        assert all(reaches(run, role, SIP_PORT, protocol, own_pod(run, peer)) for peer in CSCF_ROLES)


def test_a_peer_outside_the_cluster_is_named_by_its_source_range(default_run, peers_run):
    assert not reaches(default_run, "icscf", SIP_PORT, "UDP", IBCF)
    assert reaches(peers_run, "icscf", SIP_PORT, "UDP", IBCF)
    assert not reaches(peers_run, "icscf", SIP_PORT, "UDP", Source("198.51.100.7"))


def test_sip_peers_get_sip_only(peers_run):
    """Naming an AS opens the I-/S-CSCF's SIP port to it, not Diameter, not the P-CSCF's Mw
    (trusted as the core), not Valkey."""
    for role in ("icscf", "scscf"):
        assert not reaches(peers_run, role, DIAMETER_PORT, "TCP", AS_POD)
    for protocol in ("UDP", "TCP"):
        assert not reaches(peers_run, "pcscf", MW_PORT, protocol, AS_POD)
        assert not reaches(peers_run, "pcscf", MW_PORT, protocol, IBCF)
    valkey = peers_run.mocks.named("valkey-statefulset").inputs["spec"]["template"]["metadata"]["labels"]
    policies = [Policy(r.inputs["metadata"]["namespace"], r.inputs["spec"]) for r in peers_run.mocks.of_type(NETWORK_POLICY)]
    assert not admitted(policies, NS, valkey, 6379, "TCP", AS_POD)


def test_diameter_from_an_hss_and_pcrf_in_another_namespace(default_run, peers_run):
    for role in ("icscf", "scscf"):
        assert not reaches(default_run, role, DIAMETER_PORT, "TCP", HSS_POD)
        assert reaches(peers_run, role, DIAMETER_PORT, "TCP", HSS_POD)
    assert not reaches(default_run, "pcscf", DIAMETER_PORT, "TCP", PCRF_POD)
    assert reaches(peers_run, "pcscf", DIAMETER_PORT, "TCP", PCRF_POD)
    # A Diameter peer namespace opens Diameter, not SIP.
    assert not reaches(peers_run, "scscf", SIP_PORT, "UDP", Source.pod("open5gs", {}))


def test_diameter_from_a_source_range():
    run = run_program({"diameterPeerCidrs": ["203.0.113.20/32"]})
    assert reaches(run, "scscf", DIAMETER_PORT, "TCP", Source("203.0.113.20"))
    assert not reaches(run, "scscf", DIAMETER_PORT, "TCP", Source("203.0.113.21"))


def test_an_hss_service_address_is_no_policy_source_and_the_stack_says_so():
    """hssAddress is where the CSCFs connect to (often a Service's ClusterIP); packets never
    come from a ClusterIP, so it is not turned into an ipBlock. Without a Diameter peer
    setting the program warns instead."""
    run = run_program({"hssAddress": "10.96.7.7"})
    assert not reaches(run, "scscf", DIAMETER_PORT, "TCP", Source("10.96.7.7"))
    warning = policy.unadmitted_diameter_peer(stack_settings(hssAddress="10.96.7.7"), "hss")
    assert warning and "hssAddress = '10.96.7.7'" in warning and "diameterPeerNamespaces" in warning
    assert policy.unadmitted_diameter_peer(stack_settings(hssAddress="10.96.7.7", diameterPeerNamespaces=["open5gs"]), "hss") is None
    assert policy.unadmitted_diameter_peer(stack_settings(), "hss") is None


def test_gm_stays_open_to_ues_from_anywhere(default_run):
    ue = Source("100.64.0.10")
    for protocol in ("UDP", "TCP"):
        assert reaches(default_run, "pcscf", SIP_PORT, protocol, ue)
        assert not reaches(default_run, "pcscf", MW_PORT, protocol, ue)
        assert not reaches(default_run, "scscf", SIP_PORT, protocol, ue)


INVALID = [
    ({"sipPeerNamespaces": ["IMS_AS"]}, "sipPeerNamespaces = ['IMS_AS']: 'IMS_AS' not a namespace name"),
    ({"sipPeerCidrs": ["192.0.2.1/24"]}, "sipPeerCidrs = ['192.0.2.1/24']: '192.0.2.1/24' has host bits set"),
    ({"diameterPeerCidrs": ["hss.example.net"]}, "diameterPeerCidrs = ['hss.example.net']: 'hss.example.net' is not an IPv4 range"),
    ({"diameterPeerNamespaces": "open5gs"}, "diameterPeerNamespaces = 'open5gs': must be a list"),
]


@pytest.mark.parametrize(("config", "message"), INVALID, ids=[m.split(":")[0] for _, m in INVALID])
def test_bad_peer_settings_fail_with_their_key_and_create_nothing(config, message):
    run = run_program(config)
    assert run.error is not None and message in str(run.error), run.error
    assert run.resources == []
