"""The P-CSCF's two SIP sockets on Kubernetes: Gm open to UEs, Mw only from the core.

The P-CSCF treats what arrives on its Mw port as the core (mobile-terminating requests, no
pike), so the NetworkPolicy must admit that port from the I-/S-CSCF pods only; a UE that
could reach it would pass as the S-CSCF.
"""

from __future__ import annotations

from components.render.kamailio import MW_PORT, SIP_PORT
from tests.unit.conftest import container, pod_spec, run_program

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def ingress(run, name: str) -> list[dict]:
    return run.mocks.named(f"{name}-ingress").inputs["spec"]["ingress"]


def rules_for(rules: list[dict], port: int, protocol: str) -> list[dict]:
    return [r for r in rules if {"port": port, "protocol": protocol} in r.get("ports", [])]


def sources(rule: dict) -> set[str]:
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]}


def test_mw_port_is_admitted_only_from_the_core_while_gm_is_open(dev_run):
    rules = ingress(dev_run, "pcscf")
    for protocol in ("UDP", "TCP"):
        (gm,) = rules_for(rules, SIP_PORT, protocol)
        assert "from" not in gm  # UEs come from anywhere
        (mw,) = rules_for(rules, MW_PORT, protocol)
        assert sources(mw) == {"icscf", "scscf"}
        assert {"port": MW_PORT, "protocol": protocol} not in gm["ports"]


def test_mw_is_a_pcscf_container_and_service_port_only(dev_run):
    pcscf = container(dev_run.mocks.named("pcscf-deployment"))
    assert {(p["name"], p["containerPort"], p["protocol"]) for p in pcscf["ports"]} >= {
        ("sip-mw-udp", MW_PORT, "UDP"),
        ("sip-mw-tcp", MW_PORT, "TCP"),
    }
    service = dev_run.mocks.named("pcscf-service").inputs["spec"]["ports"]
    assert {(p["name"], p["port"], p["protocol"]) for p in service} >= {
        ("sip-mw-udp", MW_PORT, "UDP"),
        ("sip-mw-tcp", MW_PORT, "TCP"),
    }
    for role in ("icscf", "scscf"):
        ports = container(dev_run.mocks.named(f"{role}-deployment"))["ports"]
        assert MW_PORT not in {p["containerPort"] for p in ports}


def test_mw_stays_closed_to_ues_with_ipsec_off():
    run = run_program({"pcscfIpsec": "false"})
    rules = ingress(run, "pcscf")
    (mw,) = rules_for(rules, MW_PORT, "UDP")
    assert sources(mw) == {"icscf", "scscf"}
    assert all(MW_PORT not in {p["port"] for p in r["ports"]} for r in rules if "from" not in r)
    assert run.mocks.of_type(NETWORK_POLICY)


def test_every_cscf_has_a_writable_tmp_on_its_read_only_root(dev_run):
    """cdp makes a FIFO per Diameter peer under /tmp: without a volume there the read-only
    root makes it fail, a cdp worker exits and Kamailio stops (seen on the node tier)."""
    for role in ("pcscf", "icscf", "scscf"):
        deployment = dev_run.mocks.named(f"{role}-deployment")
        kamailio = container(deployment)
        assert kamailio["securityContext"]["readOnlyRootFilesystem"] is True
        (mount,) = [m for m in kamailio["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert not mount.get("readOnly")
        (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
        assert "emptyDir" in volume
