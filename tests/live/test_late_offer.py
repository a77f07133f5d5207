"""Live: a call whose INVITE has no SDP (late offer) is anchored in rtpengine on both legs.

The 200 then carries the offer and the ACK the answer (RFC 3264). Before, the P-CSCF
treated any SDP in a 200 as the answer to an offer it had made: rtpengine refused it
("Unknown call-id") and both UEs saw each other's own addresses, the media unanchored.
"""

from __future__ import annotations

import re

from tests.live import sipp
from tests.live.test_pcscf_indialog import blocks


def connections(message: str) -> list[str]:
    return re.findall(r"(?m)^c=IN IP4 (\S+)", message)


def test_late_offer_call_is_anchored_both_ways(core):
    alice, bob = core.users.alice, core.users.bob
    domain = core.settings.ims_domain
    for ue in (alice, bob):
        run = core.sipp(ue, sipp.register(ue, domain), f"register-{ue.name}-late-offer")
        assert run.returncode == 0, run.explain()
    callee = core.sipp(bob, sipp.answer(bob), "answer-bob-late-offer", timeout=20, background=True)
    caller = core.sipp(alice, sipp.call(alice, bob, domain, late_offer=True), "call-alice-late-offer")
    callee.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()

    rtpengine = core.settings.nf("rtpengine").address
    received_by_bob = blocks(callee.messages, "received")
    (invite,) = [m for m in received_by_bob if m.startswith("INVITE ")]
    assert connections(invite) == [], invite
    # The offer (bob's 200) reaches alice from rtpengine, the answer (alice's ACK) reaches bob so.
    (offer,) = [m for m in blocks(caller.messages, "received") if m.startswith("SIP/2.0 200") and "CSeq: 1 INVITE" in m]
    assert connections(offer) == [rtpengine], offer
    (ack,) = [m for m in received_by_bob if m.startswith("ACK ")]
    assert connections(ack) == [rtpengine], ack
