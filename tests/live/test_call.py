"""Live: a call between two registered UEs, P-CSCF -> S-CSCF -> (I-CSCF) -> S-CSCF -> P-CSCF.

Media (tests/live/RTPENGINE.md): UE A streams PCMU with SIPp's rtp_stream from the ACK to the
BYE, UE B echoes it (SIPp -rtp_echo). The P-CSCF anchors both legs in rtpengine (the session
fixture runs the product's rendered rtpengine.conf): the MO leg under the Call-ID, the MT leg
under Call-ID + "-mt". rtpengine's own `query` totals, taken during the call, show A's RTP
reaching B and B's echo coming back; after the BYE both sessions and their ports are gone.
"""

from __future__ import annotations

import re
import time

from tests.live import sipp

HOLD_MS = 1500
# One second of PCMU silence: 50 packets of 20 ms per loop.
PCMU_SECOND = bytes([0xFF]) * 8000


def sdp_connection(message: str) -> str:
    match = re.search(r"(?m)^c=IN IP4 (\S+)", message)
    assert match, message
    return match.group(1)


def sdp_audio_port(message: str) -> int:
    match = re.search(r"(?m)^m=audio (\d+) ", message)
    assert match, message
    return int(match.group(1))


def watch_sessions(rtpengine, run, interval: float = 0.1) -> dict[str, dict]:
    """rtpengine's last `query` answer for every call it holds while `run` (SIPp) is running."""
    seen: dict[str, dict] = {}
    while run.proc.poll() is None:
        for call_id in rtpengine.ng.command("list").get("calls", []):
            answer = rtpengine.ng.command("query", **{"call-id": call_id})
            if answer.get("result") == "ok":
                seen[call_id] = answer
        time.sleep(interval)
    return seen


def ports_used(rtpengine) -> int:
    (interface,) = rtpengine.ng.command("statistics")["statistics"]["interfaces"]
    return interface["ports"]["used"]


def streams(query: dict) -> list[dict]:
    """Every media stream of a `query` answer (one per endpoint and component)."""
    return [
        stream
        for tag in query["tags"].values()
        for media in tag.get("medias", [])
        for stream in media.get("streams", [])
    ]


def received_from(query: dict, address: str) -> int:
    """RTP packets rtpengine received from `address` (a UE) in this session."""
    return sum(
        s["stats"]["packets"] for s in streams(query) if s.get("endpoint", {}).get("address") == address
    )


def test_registered_ues_call_with_media_through_rtpengine(core):
    alice, bob = core.users.alice, core.users.bob
    domain = core.settings.ims_domain
    for ue in (alice, bob):
        run = core.sipp(ue, sipp.register(ue, domain), f"register-{ue.name}-for-call")
        assert run.returncode == 0, run.explain()

    # Other tests of the session may have left calls in rtpengine: count from what is there now.
    ports_before = ports_used(core.rtpengine)
    audio = core.workdir / "pcmu-1s.raw"
    audio.write_bytes(PCMU_SECOND)
    callee = core.sipp(
        bob, sipp.answer(bob), "answer-bob", timeout=20, background=True, extra_args=("-mi", bob.address, "-rtp_echo")
    )
    caller = core.sipp(
        alice,
        sipp.call(
            alice, bob, domain, extra_headers="P-Asserted-Identity: <sip:president@example.org>",
            hold_ms=HOLD_MS, rtp_stream=str(audio),
        ),
        "call-alice-bob",
        background=True,
        extra_args=("-mi", alice.address),
    )
    during = watch_sessions(core.rtpengine, caller)
    caller.wait()
    callee.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()

    # The SDP each UE sees points at rtpengine, on a port of the rendered range.
    media = core.settings.media
    rtpengine = core.settings.nf("rtpengine").address
    (invite,) = callee.received("INVITE ")
    assert sdp_connection(invite) == rtpengine, invite
    ok = [m for m in caller.received("SIP/2.0 200") if "CSeq: 1 INVITE" in m]
    assert ok and sdp_connection(ok[0]) == rtpengine, caller.explain()
    for message in (invite, ok[0]):
        assert media.port_min <= sdp_audio_port(message) <= media.port_max, message
        assert re.search(rf"(?m)^o=.* IN IP4 {re.escape(rtpengine)}\s*$", message), message

    # During the call: A's RTP entered the MO session, crossed to the MT session and left it
    # for B; B's echo (only possible if B received it) came back into the MT session.
    (call_id,) = re.findall(r"(?m)^Call-ID: *(\S+)", invite)
    mo, mt = during.get(call_id), during.get(f"{call_id}-mt")
    assert mo and mt, sorted(during)
    assert received_from(mo, alice.address) > 0, mo
    assert mt["totals"]["RTP"]["packets"] > 0, mt
    assert received_from(mt, bob.address) > 0, mt

    # After the BYE: both sessions are gone and the call's media ports are released.
    for leg in (call_id, f"{call_id}-mt"):
        gone = core.rtpengine.ng.command("query", **{"call-id": leg})
        assert gone["result"] == "error", gone
    assert ports_used(core.rtpengine) == ports_before

    # The UE's own P-Asserted-Identity never reaches the callee; the P-CSCF asserts alice.
    assert "president@example.org" not in invite, invite
    assert re.search(rf"(?m)^P-Asserted-Identity: <{re.escape(alice.impu)}>", invite), invite
    assert callee.received("BYE ")


def test_unregistered_ue_cannot_call(core):
    carol, bob = core.users.carol, core.users.bob
    run = core.sipp(carol, sipp.call_refused(carol, bob, core.settings.ims_domain, "403"), "call-unregistered")
    assert run.returncode == 0, run.explain()
