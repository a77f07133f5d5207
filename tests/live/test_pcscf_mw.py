"""Live: the P-CSCF takes only its Mw socket as the core; a UE cannot pass as the core on Gm.

The Path the P-CSCF inserts at registration names its Mw port (render/kamailio.MW_PORT), so
the S-CSCF's mobile-terminating requests arrive there. A UE that sends an INVITE to the Gm
port with the core's term/mt Route (what the S-CSCF would send, aimed at the callee's
registered contact) is refused with 403 and nothing reaches the callee; before the Mw socket
such a request went straight to the callee, past the registration check and pike.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from components.render import kamailio as render_kamailio
from tests.live import sipp


def header(message: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"(?im)^{re.escape(name)}:(.*)$", message)]


def test_registration_path_points_at_the_mw_socket(core):
    bob = core.users.bob
    run = core.sipp(bob, sipp.register(bob, core.settings.ims_domain), "register-bob-path")
    assert run.returncode == 0, run.explain()
    (ok,) = run.received("SIP/2.0 200")
    pcscf = core.settings.nf("pcscf").fqdn
    assert header(ok, "Path") == [f"<sip:term@{pcscf}:{render_kamailio.MW_PORT};lr>"], ok


FORGED_ROUTES = {
    "term-on-mw-port": "Route: <sip:term@{pcscf}:{mw};lr>",
    "term-on-gm-port": "Route: <sip:term@{address}:{gm};lr>",
    "mt-after-own-route": "Route: <sip:{address}:{gm};lr>\nRoute: <sip:mt@{address}:{mw};lr>",
}


@pytest.mark.parametrize("forged", sorted(FORGED_ROUTES))
def test_forged_core_route_on_gm_is_refused_and_never_reaches_the_callee(core, forged):
    bob, mallory = core.users.bob, core.users.mallory  # mallory: never registered, not in the HSS
    domain = core.settings.ims_domain
    run = core.sipp(bob, sipp.register(bob, domain), f"register-bob-{forged}")
    assert run.returncode == 0, run.explain()

    pcscf = core.settings.nf("pcscf")
    route = FORGED_ROUTES[forged].format(
        pcscf=pcscf.fqdn, address=pcscf.address, mw=render_kamailio.MW_PORT, gm=render_kamailio.SIP_PORT
    )
    # Bob's registered contact, where the P-CSCF would relay a mobile-terminating INVITE.
    with core.ns.entered():
        callee = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        callee.bind((bob.address, bob.port))
        callee.settimeout(0.2)
        attack = core.sipp(
            mallory,
            sipp.call_refused(
                mallory, bob, domain, "403", request_uri=f"sip:{bob.name}@{bob.address}:{bob.port}", extra_headers=route
            ),
            f"forged-route-{forged}",
        )
        assert attack.returncode == 0, attack.explain()
        (refused,) = attack.received("SIP/2.0 403")
        assert "Route reserved for the core" in refused.splitlines()[0], refused
        reached = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                reached.append(callee.recv(65535).decode(errors="replace"))
            except TimeoutError:
                pass
        assert reached == [], reached
    finally:
        callee.close()
