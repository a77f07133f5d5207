"""Live: the P-CSCF's Gm side: registration over TCP, and pike banning a flooding address.

The flood is REGISTERs without Contact, which the P-CSCF answers itself (400) once pike has
let them through, so the burst loads no other NF. The flooding UE has its own loopback
address: the ban (5 minutes) touches no other test's UE.
"""

from __future__ import annotations

import re

from components.render import kamailio as render_kamailio
from tests.live import sipp

FLOOD_UE = sipp.Ue(
    name="flood", impi="flood@invalid", k="x" * 16, op="x" * 16, amf="00", address="127.0.0.109"
)
BYSTANDER = sipp.Ue(
    name="bystander", impi="bystander@invalid", k="x" * 16, op="x" * 16, amf="00", address="127.0.0.110"
)
BURST = 80


def pike_density() -> int:
    cfg = (render_kamailio.SHIPPED / "pcscf" / "kamailio.cfg").read_text()
    return int(re.search(r"(?m)^#!define PIKE_DENSITY (\d+)$", cfg).group(1))


def contactless_register(ue: sipp.Ue, domain: str, wait_ms: int) -> str:
    """One REGISTER without Contact; the 400s are counted from the trace. SIPp exits 1 when a
    receive times out even with `ontimeout`, so its exit code says nothing here."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<scenario name="contactless register {ue.name}">
  <send>
    <![CDATA[
      REGISTER sip:{domain} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <{ue.impu}>;tag=[call_number]flood
      To: <{ue.impu}>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Content-Length: 0

    ]]>
  </send>
  <recv response="400" timeout="{wait_ms}" ontimeout="end"/>
  <label id="end"/>
</scenario>
"""


def test_pike_bans_an_address_that_floods_gm_and_only_that_address(core):
    domain = core.settings.ims_domain
    density = pike_density()
    assert BURST > 2 * density
    # BURST requests within well under pike's 2 s sampling unit.
    flood = core.sipp(
        FLOOD_UE, contactless_register(FLOOD_UE, domain, 300), "pike-flood", timeout=10,
        extra_args=("-m", str(BURST), "-r", "400", "-l", str(BURST)),
    )
    sent = flood.messages.count("REGISTER sip:")
    answered = len(flood.received("SIP/2.0 400"))
    assert sent == BURST, flood.explain()
    assert 0 < answered < BURST, f"{answered} of {BURST} answered"
    assert answered <= 2 * density, f"{answered} of {BURST} answered"

    # Banned: the next request from that address gets no answer; another address still does.
    again = core.sipp(FLOOD_UE, contactless_register(FLOOD_UE, domain, 1000), "pike-after-ban", timeout=5)
    assert "REGISTER sip:" in again.messages and again.received("SIP/2.0 400") == [], again.explain()
    other = core.sipp(BYSTANDER, contactless_register(BYSTANDER, domain, 1000), "pike-bystander", timeout=5)
    assert other.received("SIP/2.0 400"), other.explain()


def test_registration_and_deregistration_over_tcp(core):
    alice = core.users.alice
    domain = core.settings.ims_domain
    run = core.sipp(alice, sipp.register(alice, domain), "register-alice-tcp", extra_args=("-t", "t1"))
    assert run.returncode == 0, run.explain()
    (ok,) = run.received("SIP/2.0 200")
    assert re.search(r"(?m)^Via: SIP/2.0/TCP ", ok), ok
    assert core.hss.registration_state(alice.impu).value == "REGISTERED"

    run = core.sipp(alice, sipp.register(alice, domain, expires=0), "deregister-alice-tcp", extra_args=("-t", "t1"))
    assert run.returncode == 0, run.explain()
    assert run.received("SIP/2.0 200"), run.explain()
    assert core.hss.registration_state(alice.impu).value != "REGISTERED"
