"""CSCF readiness includes the Diameter peer it cannot work without (cscf-ready-probe).

Readiness: SIP OPTIONS answered and, over the ctl socket, cdp's connection to the HSS (I-/S-CSCF,
Cx) or the PCRF (P-CSCF, Rx, when Rx is on) open. Liveness stays SIP only: a CSCF whose HSS is
down must be taken out of its Service, not restarted.
"""

from __future__ import annotations

from pathlib import Path

from components.render import kamailio as render_kamailio
from components.settings import CSCF_ROLES
from tests.profiles import stack_settings
from tests.unit.conftest import container, run_program

DOCKERFILE = Path(__file__).resolve().parents[2] / "dockerfiles" / "kamailio" / "Dockerfile"
HSS = "hss.epc.mnc001.mcc001.3gppnetwork.org"
PCRF = "pcrf.epc.mnc001.mcc001.3gppnetwork.org"


def probes(run, role: str) -> tuple[list[str], list[str]]:
    c = container(run.mocks.named(f"{role}-deployment"))
    return c["readinessProbe"]["exec"]["command"], c["livenessProbe"]["exec"]["command"]


def test_readiness_waits_for_cx_and_rx_and_liveness_does_not(dev_run):
    expected = {"pcscf": [PCRF], "icscf": [HSS], "scscf": [HSS]}
    for role in CSCF_ROLES:
        ready, live = probes(dev_run, role)
        assert ready == [
            "/usr/local/bin/cscf-ready-probe", "127.0.0.1", "5060", "unix:/run/kamailio/kamailio_ctl", *expected[role]
        ], role
        assert live[0] == "/usr/local/bin/sip-options-probe" and not any("epc" in a for a in live), role


def test_a_pcscf_without_rx_is_ready_on_sip_alone():
    run = run_program({"pcscfRx": "false"})
    assert run.error is None, run.error
    ready, _ = probes(run, "pcscf")
    assert ready == ["/usr/local/bin/cscf-ready-probe", "127.0.0.1", "5060", "unix:/run/kamailio/kamailio_ctl"]


def test_an_external_hss_is_the_peer_the_cscfs_wait_for():
    run = run_program({"open5gs": "false", "hssAddress": "192.0.2.10", "pcrfAddress": "192.0.2.11"})
    assert run.error is None, run.error
    for role, peer in (("icscf", HSS), ("scscf", HSS), ("pcscf", PCRF)):
        assert probes(run, role)[0][-1] == peer


def test_the_probe_names_peers_as_cdp_lists_them():
    # cdp.list_peers shows each peer by the FQDN of its <Peer> entry in diameter.xml.
    s = stack_settings()
    for role in CSCF_ROLES:
        xml = render_kamailio.diameter_xml(s, role) or ""
        for peer in render_kamailio.readiness_peers(s, role):
            assert f'<Peer FQDN="{peer}"' in xml, (role, peer)


def test_the_image_ships_the_probe_and_kamcmd():
    text = DOCKERFILE.read_text()
    assert "cscf-ready-probe" in text and "/usr/sbin/kamcmd" in text
