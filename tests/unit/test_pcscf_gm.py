"""Gm exposure and IPsec on the P-CSCF: what `pulumi preview` shows for pcscfGmExposure/pcscfIpsec.

The protected ports ims_ipsec_pcscf opens (IPSEC_MAX_CONNECTIONS client and server ports, read
here from the rendered defines.cfg the pod gets) must be exactly the container ports, the
Service ports and the NetworkPolicy's Gm ports; the tunnels are bound to the pod's address
from the downward API. That the rendered config really opens those ports and makes working SAs
on that address is the vm tier's part (tests/vm/test_gm_ipsec.py).
"""

from __future__ import annotations

import re

import pytest

from components.render import kamailio as render_kamailio
from components.settings import SettingsError
from tests.profiles import stack_settings
from tests.unit.conftest import container, pod_spec, run_program

IPSEC_ON = {"pcscfIpsec": "true", "pcscfGmExposure": "hostNetwork"}


def rendered_ipsec_ports(defines: str) -> set[int]:
    """The ports the module opens, as the rendered defines.cfg configures it."""
    value = {m[0]: int(m[1]) for m in re.findall(r"#!define (IPSEC_\w+) (\d+)", defines)}
    pairs = value["IPSEC_MAX_CONNECTIONS"]
    return {value[base] + n for base in ("IPSEC_CLIENT_PORT", "IPSEC_SERVER_PORT") for n in range(pairs)}


def pcscf_defines(run) -> str:
    data = run.mocks.of_type("kubernetes:core/v1:ConfigMap")
    (config,) = [
        c
        for c in data
        if "defines.cfg" in c.inputs.get("data", {}) and 'ROLE "pcscf"' in c.inputs["data"]["defines.cfg"]
    ]
    return config.inputs["data"]["defines.cfg"]


def test_defaults_are_ipsec_off_and_gm_through_the_service():
    s = stack_settings("defaults")
    assert (s.pcscf_ipsec, s.pcscf_gm_exposure) == (False, "service")
    run = run_program({})
    pcscf = run.mocks.named("pcscf-deployment")
    assert not pod_spec(pcscf).get("hostNetwork")
    assert "add" not in container(pcscf)["securityContext"]["capabilities"]
    assert "WITH_IPSEC" not in pcscf_defines(run)


def test_ipsec_through_the_service_is_refused_with_both_keys_named():
    with pytest.raises(SettingsError) as err:
        stack_settings("x", pcscfIpsec=True)
    assert "pcscfIpsec = true with pcscfGmExposure = 'service'" in str(err.value)
    assert "ESP" in str(err.value) and "hostNetwork" in str(err.value)


def test_unknown_gm_exposure_is_refused():
    with pytest.raises(SettingsError, match="pcscfGmExposure = 'nodePort': must be one of service, hostNetwork"):
        stack_settings("x", pcscfGmExposure="nodePort")


def test_ipsec_pod_is_on_the_node_network_with_its_address_from_the_downward_api():
    run = run_program(IPSEC_ON)
    pcscf = run.mocks.named("pcscf-deployment")
    spec = pod_spec(pcscf)
    assert spec["hostNetwork"] is True
    assert pcscf.inputs["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"]: e for e in container(pcscf)["env"]}
    assert env[render_kamailio.POD_IP_ENV]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    listen = [line for line in pcscf_defines(run).splitlines() if "IPSEC_LISTEN_ADDRESS" in line]
    assert listen == [f"#!defenvs IPSEC_LISTEN_ADDRESS={render_kamailio.POD_IP_ENV}"]


def test_protected_ports_match_container_service_and_network_policy():
    run = run_program(IPSEC_ON)
    opened = rendered_ipsec_ports(pcscf_defines(run))
    assert len(opened) == 2 * render_kamailio.IPSEC_PORT_PAIRS
    pcscf = run.mocks.named("pcscf-deployment")
    for proto in ("UDP", "TCP"):
        ports = {
            p["containerPort"]
            for p in container(pcscf)["ports"]
            if p["name"].startswith("ipsec") and p["protocol"] == proto
        }
        assert ports == opened, proto
        service = {
            p["port"]
            for p in run.mocks.named("pcscf-service").inputs["spec"]["ports"]
            if p["name"].startswith("ipsec") and p["protocol"] == proto
        }
        assert service == opened, proto
        gm = [r for r in run.mocks.named("pcscf-ingress").inputs["spec"]["ingress"] if "from" not in r]
        policy = {p["port"] for r in gm for p in r["ports"] if p["protocol"] == proto} - {render_kamailio.SIP_PORT}
        assert policy == opened, proto


def test_host_network_without_ipsec_keeps_the_pod_unprivileged():
    run = run_program({"pcscfGmExposure": "hostNetwork"})
    pcscf = run.mocks.named("pcscf-deployment")
    assert pod_spec(pcscf)["hostNetwork"] is True
    assert container(pcscf)["securityContext"]["runAsNonRoot"] is True
    assert not any(p["name"].startswith("ipsec") for p in container(pcscf)["ports"])
