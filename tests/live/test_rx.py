"""Live: the P-CSCF's Rx (TS 29.214) towards the PCRF test double, Rx on as in the default stack.

- Registration: the P-CSCF provisions the UE's AF signalling flows (Flow-Usage AF_SIGNALLING,
  between the UE and the P-CSCF's Gm address) with one AAR per registration attempt, and the
  registration completes.
- A call A->B: one AAR per leg whose Media-Component-Description carries the flows of the SDP
  that UE sent and received (the UE's address/port and rtpengine's); the BYE sends an STR for
  each of those sessions.
- A PCRF refusing the media (Experimental-Result REQUESTED_SERVICE_NOT_AUTHORIZED): the
  callee's 200 still reaches the caller (a 200 cannot be taken back), and once the ACK
  confirms the call the P-CSCF releases it with a BYE to each UE carrying a Reason; 200 such
  calls leave the P-CSCF's transaction and dialog counters where they started.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests import debian_root
from tests.doubles import rx_pcrf
from tests.live import sipp


def sdp_media(message: str) -> tuple[str, int]:
    """(c= address, m=audio port) of a SIP message's SDP."""
    conn = re.search(r"(?m)^c=IN IP4 (\S+)", message)
    port = re.search(r"(?m)^m=audio (\d+) ", message)
    assert conn and port, message
    return conn.group(1), int(port.group(1))


def register(core, *ues) -> None:
    for ue in ues:
        run = core.sipp(ue, sipp.register(ue, core.settings.ims_domain), f"register-{ue.name}-rx")
        assert run.returncode == 0, run.explain()


def test_registration_provisions_the_signalling_flows(core):
    alice = core.users.alice
    core.pcrf.clear_requests()
    register(core, alice)

    aar = core.pcrf.wait_for_request("AAR", predicate=lambda r: r.framed_ip == alice.address)
    assert aar.result_code == 2001 and aar.signalling, aar
    assert ("SIP_URI", alice.impu) in aar.subscription_ids, aar
    (component,) = aar.media_components
    pcscf = core.settings.nf("pcscf").address
    assert set(component.flow_descriptions) == {
        f"permit out ip from {pcscf} 5060 to {alice.address} {alice.port}",
        f"permit in ip from {alice.address} {alice.port} to {pcscf} 5060",
    }, component
    # One AAR per registration attempt (the challenged REGISTER), none for the answer to the
    # challenge; the session stays open while the UE is registered.
    assert [r.framed_ip for r in core.pcrf.requests_of("AAR")] == [alice.address]
    assert aar.session_id in core.pcrf.open_sessions
    assert core.pcrf.errors == []


def test_call_authorises_the_sdp_media_and_bye_ends_it(core):
    alice, bob = core.users.alice, core.users.bob
    domain = core.settings.ims_domain
    register(core, alice, bob)
    core.pcrf.clear_requests()

    callee = core.sipp(bob, sipp.answer(bob), "answer-bob-rx", timeout=10, background=True)
    caller = core.sipp(alice, sipp.call(alice, bob, domain), "call-alice-bob-rx", timeout=10, background=True)
    caller.wait()
    callee.wait()
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()

    media = [r for r in core.pcrf.requests_of("AAR") if not r.signalling]
    by_ue = {r.framed_ip: r for r in media}
    assert sorted(by_ue) == sorted([alice.address, bob.address]), media
    assert all(r.result_code == 2001 and r.af_application_id for r in media), media

    # Each UE's AAR carries one audio component whose flows join the SDP that UE sent to the
    # SDP it received (rtpengine's address and port): uplink and downlink.
    (invite_out,) = [m for m in caller.messages.split("UDP message sent") if m.lstrip(" (0123456789bytes):\n").startswith("INVITE")][:1]
    sent = {
        alice.address: sdp_media(invite_out),
        bob.address: sdp_media([m for m in callee.messages.split("UDP message sent") if "200 OK" in m and "m=audio" in m][0]),
    }
    got = {
        alice.address: sdp_media([m for m in caller.received("SIP/2.0 200") if "m=audio" in m][0]),
        bob.address: sdp_media(callee.received("INVITE ")[0]),
    }
    for ue in (alice, bob):
        (component,) = by_ue[ue.address].media_components
        assert component.media_type == "audio", component
        (ue_ip, ue_port), (far_ip, far_port) = sent[ue.address], got[ue.address]
        assert (ue_ip, far_ip) == (ue.address, core.settings.nf("rtpengine").address)
        assert set(component.flow_descriptions) == {
            f"permit out 17 from {far_ip} {far_port} to {ue_ip} {ue_port}",
            f"permit in 17 from {ue_ip} {ue_port} to {far_ip} {far_port}",
        }, component

    # The BYE: an STR for each media session, answered, and no media session left open.
    for aar in media:
        sta = core.pcrf.wait_for_request("STR", predicate=lambda r, sid=aar.session_id: r.session_id == sid)
        assert sta.result_code == 2001 and sta.termination_cause == 1, sta  # DIAMETER_LOGOUT
    assert not {r.session_id for r in media} & set(core.pcrf.open_sessions)
    assert core.pcrf.errors == []


@dataclass
class RefusedCall:
    aar: rx_pcrf.RxRequest
    caller: object
    callee: object


@pytest.fixture(scope="module")
def refused_call_run(core) -> RefusedCall:
    """One call A->B while the PCRF refuses media (REQUESTED_SERVICE_NOT_AUTHORIZED)."""
    alice, bob = core.users.alice, core.users.bob
    register(core, alice, bob)
    core.pcrf.aar_policy = rx_pcrf.refuse_media(rx_pcrf.REQUESTED_SERVICE_NOT_AUTHORIZED)
    try:
        core.pcrf.clear_requests()
        callee = core.sipp(bob, sipp.answer_released(bob), "answer-bob-refused", timeout=10, background=True)
        caller = core.sipp(alice, sipp.call_released(alice, bob), "call-refused-by-pcrf", timeout=10)
        callee.wait()
        aar = core.pcrf.wait_for_request("AAR", predicate=lambda r: not r.signalling)
    finally:
        core.pcrf.aar_policy = rx_pcrf.accept_all
    return RefusedCall(aar, caller, callee)


def test_pcrf_refusal_releases_the_answered_call_on_both_sides(refused_call_run):
    """The 200 reaches the caller (it cannot be taken back), the ACK completes the INVITE,
    then the P-CSCF sends each UE a BYE with a Reason; each UE answers it, so neither keeps a
    live dialog."""
    run = refused_call_run
    assert run.aar.result_code == rx_pcrf.REQUESTED_SERVICE_NOT_AUTHORIZED
    assert run.aar.answer.experimental_result == (rx_pcrf.VENDOR_3GPP, rx_pcrf.REQUESTED_SERVICE_NOT_AUTHORIZED)
    for ue in (run.caller, run.callee):
        assert ue.returncode == 0, ue.explain()
        (bye,) = ue.received("BYE ")
        assert re.search(r"(?m)^Reason: SIP;cause=503;text=", bye), bye
    assert run.caller.received("SIP/2.0 200"), run.caller.explain()
    assert not run.caller.received("SIP/2.0 488"), run.caller.explain()


def stats(core, role: str) -> dict[str, int]:
    """Kamailio's counters (kamcmd stats.get_statistics all) of one role, "group:name" -> value."""
    sock = f"unix:{core.workdir / role / 'kamailio_ctl'}"
    out = subprocess.run(
        core.ns.prefix() + debian_root.command(["kamcmd", "-s", sock, "stats.get_statistics", "all"]),
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"(?m)^\s*([\w.-]+:[\w.-]+) = (-?\d+)\s*$", out)}


def settled_stats(core, role: str, timeout: float = 20.0) -> dict[str, int]:
    """`stats` once no finished transaction waits out tm's wait timer (5 s) any more."""
    deadline = time.monotonic() + timeout
    current = stats(core, role)
    while current["tmx:inuse_transactions"] != current["tmx:active_transactions"] and time.monotonic() < deadline:
        time.sleep(0.5)
        current = stats(core, role)
    return current


LEAK_CALLS = 200
LEAK_COUNTERS = ("tmx:active_transactions", "tmx:inuse_transactions", "dialog_ng:active", "dialog_ng:early")


def test_refused_calls_leave_no_transaction_or_dialog_behind(core):
    """200 refused calls: afterwards the P-CSCF's transactions and dialogs are back where they
    started, and rtpengine holds no session. 4 calls a second (INVITE and ACK: 16 requests in
    2 s) stays under the P-CSCF's pike limit (32 in 2 s), which would ban the caller."""
    alice, bob = core.users.alice, core.users.bob
    register(core, alice, bob)
    before = settled_stats(core, "pcscf")
    assert all(name in before for name in LEAK_COUNTERS), " ".join(sorted(before))
    many = ("-m", str(LEAK_CALLS), "-r", "4", "-l", "10")
    core.pcrf.aar_policy = rx_pcrf.refuse_media(rx_pcrf.REQUESTED_SERVICE_NOT_AUTHORIZED)
    try:
        callee = core.sipp(bob, sipp.answer_released(bob), "answer-bob-refused-many", timeout=90, background=True, extra_args=many)
        caller = core.sipp(alice, sipp.call_released(alice, bob), "call-refused-many", timeout=90, extra_args=many)
        callee.wait()
    finally:
        core.pcrf.aar_policy = rx_pcrf.accept_all
    assert caller.returncode == 0, caller.explain()
    assert callee.returncode == 0, callee.explain()
    assert len(caller.received("BYE ")) == len(callee.received("BYE ")) == LEAK_CALLS

    after = settled_stats(core, "pcscf")
    print({n: (before[n], after[n]) for n in LEAK_COUNTERS})
    assert {n: after[n] for n in LEAK_COUNTERS} == {n: before[n] for n in LEAK_COUNTERS}
    assert core.rtpengine.ng.command("list").get("calls", []) == []
