"""Live: a call between two registered UEs, P-CSCF -> S-CSCF -> (I-CSCF) -> S-CSCF -> P-CSCF."""

from __future__ import annotations

import re

from tests.live import sipp


def sdp_connection(message: str) -> str:
    match = re.search(r"(?m)^c=IN IP4 (\S+)", message)
    assert match, message
    return match.group(1)


def test_registered_ues_call_with_media_through_rtpengine(core):
    alice, bob = core.users.alice, core.users.bob
    domain = core.settings.ims_domain
    for ue in (alice, bob):
        run = core.sipp(ue, sipp.register(ue, domain), f"register-{ue.name}-for-call")
        assert run.returncode == 0, run.explain()

    callee = core.sipp(bob, sipp.answer(bob), "answer-bob", timeout=20, background=True)
    caller = core.sipp(
        alice, sipp.call(alice, bob, domain, extra_headers="P-Asserted-Identity: <sip:president@example.org>"), "call-alice-bob"
    )
    callee.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()

    rtpengine = core.settings.nf("rtpengine").address
    (invite,) = callee.received("INVITE ")
    assert sdp_connection(invite) == rtpengine, invite
    ok = [m for m in caller.received("SIP/2.0 200") if "CSeq: 1 INVITE" in m]
    assert ok and sdp_connection(ok[0]) == rtpengine, caller.explain()

    # The UE's own P-Asserted-Identity never reaches the callee; the P-CSCF asserts alice.
    assert "president@example.org" not in invite, invite
    assert re.search(rf"(?m)^P-Asserted-Identity: <{re.escape(alice.impu)}>", invite), invite
    assert callee.received("BYE ")


def test_unregistered_ue_cannot_call(core):
    carol, bob = core.users.carol, core.users.bob
    run = core.sipp(carol, sipp.call_refused(carol, bob, core.settings.ims_domain, "403"), "call-unregistered")
    assert run.returncode == 0, run.explain()
